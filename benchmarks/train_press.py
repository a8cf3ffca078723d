"""The Train tab's default run, pressed through the API as soon as the app answers, from the press to the
final verdict, and where that time goes (the page's own "From pressing Train to this line" line); beside it,
in the same run, the same recipe from the command line (`python -m convformer train --recipe late`).

    python -m benchmarks.train_press [--rounds 1]         # benchmarks/NOTES.md, "The default Train press"
    python -m benchmarks.train_press --cpu                # CPU seconds of the phases outside training

The app is started as `bash dev.sh app` starts it (`python app.py` on a free port, its own Gradio temp
folder); the client runs at nice 19 (it stands in for a browser elsewhere).
"""
from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if __package__ in (None, ""):
    sys.path.insert(0, str(ROOT))

from benchmarks.bench_app import Server  # noqa: E402
from convformer_app.train.jobs import NICE  # noqa: E402


def press(url: str) -> dict:
    """One default Train press; the seconds until the last update, and the page's phases line."""
    from gradio_client import Client
    client = Client(url, verbose=False)
    start = time.perf_counter()
    status = client.predict(api_name="/train")[0]
    wall = time.perf_counter() - start
    phases = dict(re.findall(r"([a-z ]+?) ([\d.]+) s", status.split("this line:", 1)[-1]))
    return {"wall_s": round(wall, 1), "status": status.splitlines()[0][:160], "phases": phases}


def command_line() -> dict:
    with tempfile.TemporaryDirectory() as out:
        start = time.perf_counter()
        subprocess.run([sys.executable, "-m", "convformer", "train", "--recipe", "late", "--threads", "2",
                        "--out", out], cwd=ROOT, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                       preexec_fn=lambda: os.setpriority(os.PRIO_PROCESS, 0, NICE))  # as the app's worker
        wall = time.perf_counter() - start
        return {"wall_s": round(wall, 1),
                "train_s": round(json.loads((Path(out) / "metrics.json").read_text())["train_time"], 1)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=1)
    ap.add_argument("--cpu", action="store_true", help="only the CPU seconds of the phases outside training")
    args = ap.parse_args(argv)
    if args.cpu:
        print(json.dumps({"load_1min": round(os.getloadavg()[0], 1), "cpu_s": cpu_phases()}, indent=1))
        return 0
    rows = []
    for _ in range(args.rounds):
        load = os.getloadavg()[0]
        os.environ["GRADIO_TEMP_DIR"] = tempfile.mkdtemp(prefix="train_press_")
        with Server() as server:
            from benchmarks.bench_app import wait_first_predict
            wait_first_predict(server, ROOT / "assets" / "examples" / "shapes_star.png")
            app = press(server.url)
        cli = command_line()
        rows.append({"load_1min": round(load, 1), "app": app, "cli": cli})
        print(json.dumps(rows[-1], ensure_ascii=False), flush=True)
    return 0



def cpu_phases() -> dict:
    """CPU seconds of each phase of the default press outside training (a busy machine stretches wall time
    but not, much, CPU time): starting the worker (Python, torch), rendering the default data, writing and
    reading it, the final test, the checkpoint, and curves.png (which app runs no longer draw)."""
    import resource

    import torch
    from safetensors.torch import load_file, save_file

    from convformer.train.recipes import RECIPES
    from convformer.train.loop import evaluate, make_datasets, plot_curves, save_best

    def children() -> float:
        r = resource.getrusage(resource.RUSAGE_CHILDREN)
        return r.ru_utime + r.ru_stime

    out = {}
    before = children()
    subprocess.run([sys.executable, "-c", "import convformer_app.train.worker"], cwd=ROOT, check=True)
    out["worker start (python + torch)"] = children() - before
    r = RECIPES["late"]
    torch.set_num_threads(2)
    t = time.process_time()
    data = make_datasets("shapes", r.img_size, train_size=r.train_size, val_size=1000, test_size=400, seed=0)
    out["render the data"] = time.process_time() - t
    with tempfile.TemporaryDirectory() as tmp:
        t = time.process_time()
        save_file({"x": data.train.images.contiguous(), "v": data.val.images.contiguous()}, f"{tmp}/d.safetensors")
        load_file(f"{tmp}/d.safetensors")
        out["write + read the data"] = time.process_time() - t
        model = r.model_config()
        from convformer.model import ConvFormer
        t = time.process_time()
        net = ConvFormer(model).eval()
        out["build the model"] = time.process_time() - t
        t = time.process_time()
        evaluate(net, data.test, batch_size=512, device=torch.device("cpu"))
        out["final test (400 images)"] = time.process_time() - t
        history = [{"epoch": 1, "val_acc": 0.5, "val_loss": 1.0, "train_loss": 1.0, "step": 1, "time": 1.0}]
        t = time.process_time()
        save_best(net, Path(tmp), classes=list(data.classes), best=history[0], history=history, cfg=r.train_config(),
                  metadata={}, train_time=1.0, step_losses=[1.0] * 500)  # the checkpoint, metrics.json, and curves.png (r.train_config().curves)
        out["checkpoint + curves.png"] = time.process_time() - t
        t = time.process_time()
        plot_curves(history, [1.0] * 500, Path(tmp) / "again.png")
        out["  of which curves.png, again (matplotlib imported)"] = time.process_time() - t
    return {k: round(v, 2) for k, v in out.items()}


if __name__ == "__main__":
    raise SystemExit(main())
