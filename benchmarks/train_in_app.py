"""A recipe trained inside the app against the same recipe from the command line, and /predict for another
user while the app trains.

    python -m benchmarks.train_in_app [--fusion vit] [--rounds 2] [--requests 15] [--out FILE] [--quick]

Starts the app as `bash dev.sh app` does (`python app.py` on a free port of 127.0.0.1: `bench_app.Server`).
Then, round by round, so that a drift of the machine lands on both: the recipe from the command line (`python
-m convformer train --recipe F --threads 2`, alone: the server is stopped by SIGSTOP meanwhile), and the same
recipe pressed through the Train tab's API (`gradio_client` at nice 19, standing in for a browser on another
machine). Both train with `fit` and report
fit's own clock (metrics.json; the checkpoint's metadata), so the ratio is the app's cost alone. Last, /predict
of the default Explore model is timed idle and while a run of the recipe trains in the app (that run is then
cancelled). Results: benchmarks/NOTES.md section 11.
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if __package__ in (None, ""):
    sys.path.insert(0, str(ROOT))

STAR = ROOT / "assets" / "examples" / "shapes_star.png"


def _cpu_s(pid: int) -> float:
    """User + system CPU seconds of a process so far (Linux)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


QUICK = {"epochs": 1, "train_images": 500}  # --quick: a smoke test of the harness; its numbers mean nothing


def command_line(fusion: str, quick: bool = False) -> float:
    """The recipe's README command; its training time (data rendering not included)."""
    small = ["--epochs", "1", "--train-size", "500", "--val-size", "100"] if quick else []
    with tempfile.TemporaryDirectory() as out:
        subprocess.run([sys.executable, "-m", "convformer", "train", "--recipe", fusion, "--threads", "2",
                        "--out", out, "--test-size", "0", *small], cwd=ROOT, check=True, stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL)
        return json.loads((Path(out) / "metrics.json").read_text())["train_time"]


def browser(url: str, fusion: str, what: str, requests: int = 15, quick: bool = False) -> dict:
    """The client's part, in its own process at nice 19 (`--browser`): it stands in for a browser on another
    machine, so it must not take the server's cores. `what`: warm (one epoch: renders the data), train (the
    recipe; the training time its checkpoint records), predict (/predict p50 idle, then while the app trains)."""
    from gradio_client import Client
    from safetensors import safe_open

    from benchmarks.http_client import HttpClient
    from convformer.train.recipes import RECIPES
    client, r = Client(url, verbose=False), RECIPES[fusion]
    run = {"epochs": r.epochs, "lr": r.lr, "batch_size": r.batch_size, "train_images": r.train_size,
           "train_img": r.img_size, "model": fusion, "api_name": "/train", **(QUICK if quick else {})}
    if what in ("warm", "train"):
        out = client.predict(**{**run, **({"epochs": 1} if what == "warm" else {})})
        with safe_open(out[3], "pt") as f:
            return {"train_s": float(json.loads(f.metadata()["convformer"])["meta"]["train_time"])}
    http = HttpClient(url)

    def timed(n: int) -> float:
        out = []
        for _ in range(n):
            t = time.perf_counter()
            http.predict(STAR)
            out.append(time.perf_counter() - t)
        return 1000 * statistics.median(out)
    timed(3)
    idle = timed(requests)
    job = client.submit(**run)
    while not any("poch" in str(o[0]) for o in job.outputs()):  # training has started: the status shows an epoch
        time.sleep(0.2)
    busy = timed(requests)
    job.cancel()
    return {"idle_ms": round(idle, 1), "training_ms": round(busy, 1), "ratio": round(busy / idle, 2)}


def _browser(url: str, fusion: str, what: str, requests: int, quick: bool) -> dict:
    out = subprocess.run(["nice", "-n", "19", sys.executable, "-m", "benchmarks.train_in_app", "--browser", what,
                          url, "--fusion", fusion, "--requests", str(requests), *(["--quick"] if quick else [])],
                         cwd=ROOT, check=True,
                         stdout=subprocess.PIPE, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.train_in_app", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--fusion", default="vit")
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--requests", type=int, default=15, help="/predict requests idle, and again while training")
    p.add_argument("--out", help="JSON file")
    p.add_argument("--quick", action="store_true", help="1 epoch of 500 images: a smoke test, numbers mean nothing")
    p.add_argument("--browser", nargs=2, metavar=("WHAT", "URL"), help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    if a.browser:
        print(json.dumps(browser(a.browser[1], a.fusion, a.browser[0], a.requests, a.quick)))
        return 0
    from benchmarks.bench_app import Server, wait_first_predict
    with Server() as running:
        wait_first_predict(running, STAR)  # up, and the default Explore model loaded
        server, url = running.proc, running.url
        _browser(url, a.fusion, "warm", a.requests, a.quick)
        rows = []
        for i in range(a.rounds):
            server.send_signal(signal.SIGSTOP)  # the reference runs alone: the server takes no CPU meanwhile
            try:
                cli = command_line(a.fusion, a.quick)
            finally:
                server.send_signal(signal.SIGCONT)
            cpu0 = _cpu_s(server.pid)
            app = _browser(url, a.fusion, "train", a.requests, a.quick)["train_s"]
            cli, app = round(cli, 2), round(app, 2)  # the checkpoint keeps 0.1 s
            rows.append({"command_line_s": cli, "app_s": app, "ratio": round(app / cli, 3),
                         "server_cpu_s": round(_cpu_s(server.pid) - cpu0, 1)})
            print(f"round {i + 1}: the {a.fusion} recipe trains in {cli:.1f} s from the command line, {app:.1f} s "
                  f"in the app ({app / cli:.2f}x; the server used {rows[-1]['server_cpu_s']} s of CPU)", flush=True)
        cpu0, t0 = _cpu_s(server.pid), time.perf_counter()
        time.sleep(2 if a.quick else 10)  # a window of the idle server
        idle_cpu = (_cpu_s(server.pid) - cpu0) / (time.perf_counter() - t0)
        print(f"the idle server: {100 * idle_cpu:.1f} % of a core", flush=True)
        p50 = _browser(url, a.fusion, "predict", a.requests, a.quick)
        print(f"/predict p50: {p50['idle_ms']} ms idle, {p50['training_ms']} ms while the app trains "
              f"({p50['ratio']}x)")
        ratio = statistics.median(row["ratio"] for row in rows)
        print(f"app / command line: {ratio:.2f} (median of {len(rows)} rounds)")
        if a.out:
            Path(a.out).write_text(json.dumps({"fusion": a.fusion, "rounds": rows, "ratio_median": ratio,
                                               "idle_server_cpu": round(idle_cpu, 4), "predict": p50,
                                               "load": os.getloadavg()}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
