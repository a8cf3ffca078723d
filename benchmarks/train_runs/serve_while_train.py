"""/predict latency on the running app, idle vs while a Train-tab run (the vit recipe, in its child process) goes
(NOTES section 10). Usage: python benchmarks/train_runs/serve_while_train.py http://127.0.0.1:7861/"""
import statistics, sys, threading, time
from pathlib import Path
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from benchmarks.http_client import HttpClient
from gradio_client import Client
URL = sys.argv[1]
img = Path(__file__).resolve().parents[2] / "assets/examples/shapes_star.png"
http = HttpClient(URL)
def timed(n):
    out = []
    for _ in range(n):
        t = time.perf_counter(); http.predict(img); out.append(time.perf_counter() - t)
    return out
timed(3)
idle = timed(15)
c = Client(URL, verbose=False)
job = c.submit(epochs=7, lr=8e-3, batch_size=128, train_images=20000, train_img=40, model="vit", api_name="/train")
while True:  # until the run has started training (its status shows an epoch)
    outs = job.outputs()
    if outs and "poch" in str(outs[-1][0]):
        break
    time.sleep(0.5)
busy = timed(15)
print(f"idle p50 {statistics.median(idle)*1000:.0f} ms, while training p50 {statistics.median(busy)*1000:.0f} ms, ratio {statistics.median(busy)/statistics.median(idle):.2f}")
job.cancel()
