"""Serving while training: the app's predict handler (`explore.predict`, the default mid model, on the app's
model thread) with a Train-tab run going against the same run paused, alternating request by request, so
that whatever else loads the machine lands on both halves of each pair.

    python -m benchmarks.train_serving [--requests 15] [--nice 10 0]

The run is the Train tab's default recipe (`fit` in a thread, as the tab does); its progress callback parks
it between steps while "paused" requests are timed. For each nice value of the training thread (10: what the
tab sets; 0: the default) it prints the median latency paused / running and their ratio (target <= 2).
Results: benchmarks/NOTES.md section 9.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import threading
import time
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.train_serving", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--requests", type=int, default=15, help="pairs of requests per nice value")
    p.add_argument("--nice", type=int, nargs="+", default=[10, 0])
    p.add_argument("--out", help="JSON file")
    a = p.parse_args(argv)

    import app  # noqa: F401  the Blocks, built as the server builds them
    import torch
    from convformer.datasets import make_datasets
    from convformer.model import ConvFormer
    from convformer.recipe import DEFAULT, RECIPES
    from convformer.shapes import render
    from convformer.train import fit
    from convformer_app import explore, session
    session.start("cpu")
    image = Path(os.environ.get("TMPDIR", "/tmp")) / "train_serving_star.png"
    render(3, "test", 224)[0].save(image)

    def predict() -> float:
        t = time.perf_counter()
        explore.predict(str(image), "mid")
        return time.perf_counter() - t
    for _ in range(3):
        predict()
    r = RECIPES[DEFAULT]
    data = make_datasets("shapes", r.img_size, train_size=r.train_size, val_size=r.val_size, test_size=0)
    out: dict = {"load_start": os.getloadavg()}
    for nice in a.nice:
        pause, parked, cancel = threading.Event(), threading.Event(), threading.Event()

        def progress(info: dict) -> None:  # parks the run between steps while a "paused" request is timed
            while pause.is_set() and not cancel.is_set():
                parked.set()
                time.sleep(0.005)
            parked.clear()

        def work(nice: int = nice) -> None:
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), nice)
            torch.manual_seed(0)
            fit(ConvFormer(r.model_config()), data.train, data.val,
                r.train_config(epochs=10, progress_bar=False, device="cpu"), progress=progress, cancel=cancel)
        thread = threading.Thread(target=work, daemon=True)
        thread.start()
        time.sleep(3)
        paused, running = [], []
        for _ in range(a.requests):
            pause.set()
            parked.wait(10)
            time.sleep(0.05)
            paused.append(predict())
            pause.clear()
            time.sleep(0.5)
            running.append(predict())
        cancel.set()
        pause.clear()
        thread.join(60)
        row = {"paused_ms": round(1000 * statistics.median(paused), 1),
               "running_ms": round(1000 * statistics.median(running), 1),
               "ratio": round(statistics.median(running) / statistics.median(paused), 2),
               "pairs": [round(b / a, 2) for a, b in zip(paused, running)]}
        out[f"nice{nice}"] = row
        print(f"training at nice {nice}: predict p50 {row['paused_ms']} ms paused, {row['running_ms']} ms running "
              f"({row['ratio']}x)", flush=True)
    out["load_end"] = os.getloadavg()
    if a.out:
        Path(a.out).write_text(json.dumps(out, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
