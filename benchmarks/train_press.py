"""The Train tab's default run, pressed through the API as soon as the app answers, from the press to the
final verdict, and where that time goes (the page's own "From pressing Train to this line" line); beside it,
in the same run, the same recipe from the command line (`python -m convformer train --recipe late`).

    python -m benchmarks.train_press [--rounds 1]         # benchmarks/NOTES.md, "The default Train press"

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
from convformer_app.train_tab import NICE  # noqa: E402


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
    args = ap.parse_args(argv)
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


if __name__ == "__main__":
    raise SystemExit(main())
