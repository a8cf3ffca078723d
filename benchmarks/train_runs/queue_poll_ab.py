"""/predict latency with Gradio's queue polled every 1 ms (its default) and every 10 ms (session.pace_queue),
alternating request by request on one server in this process (NOTES section 11).
Usage: python benchmarks/train_runs/queue_poll_ab.py"""
import statistics, sys, time
from pathlib import Path
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
import app
from benchmarks.http_client import HttpClient
app.launch("127.0.0.1", 7872, device="cpu", prevent_thread_lock=True, quiet=True)
q = app.demo._queue
http = HttpClient("http://127.0.0.1:7872/")
img = Path(__file__).resolve().parents[2] / "assets/examples/shapes_star.png"
for _ in range(3): http.predict(img)
res = {0.001: [], 0.01: []}
for i in range(20):
    for poll in (0.001, 0.01) if i % 2 else (0.01, 0.001):
        q.sleep_when_free = poll
        time.sleep(0.05)
        t = time.perf_counter(); http.predict(img); res[poll].append(time.perf_counter() - t)
for poll, xs in res.items():
    print(f"poll {poll}: /predict p50 {1000*statistics.median(xs):.1f} ms, mean {1000*statistics.mean(xs):.1f} ms")
app.demo.close()
