"""`python -m convformer study [--quick] [--seeds N]`: run the fusion study, write results.json, runs.jsonl and
study.png to --out, print the table and the verdicts. With --json-progress every progress report is one JSON
line on stdout (the app's child process reads them); SIGTERM stops after the current step and keeps the runs done."""
from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

__all__ = ["add_parser", "study_command"]


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = subparsers.add_parser("study", help="test the usual claims about early / mid / late fusion on shapes",
                              description="Train the five fusion stages (matched parameters) under one protocol, "
                              "over several seeds, and give a verdict per claim (docs/study.md).")
    p.add_argument("--quick", action="store_true", help="one seed, fewer points (about 3 minutes on 2 cores)")
    p.add_argument("--seeds", type=int, help="seeds 0..N-1 (default: 3, --quick: 1)")
    p.add_argument("--steps", type=int, help="override the protocol's steps per run")
    p.add_argument("--out", default="runs/study", help="output folder (default runs/study)")
    p.add_argument("--resume", action="store_true", help="keep the runs already in OUT/runs.jsonl")
    p.add_argument("--device", help="cpu, cuda, mps (default: the best available)")
    p.add_argument("--threads", type=int, help="torch CPU threads (per process)")
    p.add_argument("--workers", type=int, help="processes sharing the runs, one thread each, the second walking the "
                   "plan from its costly end (default: 2 on a CPU with 2 or more cores, else 1)")
    p.add_argument("--reverse", action="store_true", help=argparse.SUPPRESS)  # a worker started by --workers
    p.add_argument("--time-limit", type=float, help="seconds; stop (keeping the finished runs) when reached")
    p.add_argument("--nice", type=int, default=0, help="lower this process's CPU priority by N (Linux nice)")
    p.add_argument("--report", action="store_true", help="only write results.json and study.png from the runs "
                   "already in OUT/runs.jsonl (a study running or stopped)")
    p.add_argument("--json-progress", action="store_true", help="progress as JSON lines on stdout")
    p.set_defaults(func=study_command)
    return p


def study_command(args: argparse.Namespace) -> None:
    from .plots import save
    from .report import markdown
    from .study import report_only
    p = _protocol(args)
    _set_up(args)
    if args.report:
        doc = report_only(p, args.out)
    else:
        doc = _run(args, p)
    save(doc, f"{args.out}/study.png")
    if args.json_progress:
        print(json.dumps({"event": "done", "results": f"{args.out}/results.json", "complete": doc["complete"]}),
              flush=True)
    else:
        print(markdown(doc))


def _protocol(args: argparse.Namespace):
    """The protocol the flags ask for (full or quick, seeds and steps checked)."""
    from . import FULL, QUICK
    p = QUICK if args.quick else FULL
    if args.seeds is not None:
        if not 1 <= args.seeds <= 10:
            raise ValueError(f"--seeds {args.seeds} is not allowed: expected 1 to 10")
        p = p.replace(seeds=tuple(range(args.seeds)))
    if args.steps is not None:
        if not 1 <= args.steps <= 100_000:
            raise ValueError(f"--steps {args.steps} is not allowed: expected 1 to 100000")
        p = p.replace(steps=args.steps, eval_every=min(p.eval_every, args.steps))
    return p


def _set_up(args: argparse.Namespace) -> None:
    """Workers (default: 2 on a CPU with 2+ cores: tiny models use a second thread poorly, a second process does
    more, NOTES 15), threads per process and niceness."""
    import torch
    if args.workers is None:
        from ..data.preprocess import pick_device
        cpu = pick_device(args.device).type == "cpu"
        args.workers = 2 if cpu and (os.cpu_count() or 1) >= 2 and not args.json_progress else 1
    if not 1 <= args.workers <= 8:
        raise ValueError(f"--workers {args.workers} is not allowed: expected 1 to 8")
    if args.workers > 1 and not args.threads:
        args.threads = max(1, (os.cpu_count() or 1) // args.workers)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.nice and hasattr(os, "nice"):
        os.nice(args.nice)


def _run(args: argparse.Namespace, p) -> dict[str, Any]:
    """Run the study (with its extra worker processes), Cancel as SIGTERM; the results document."""
    from .protocol import estimate_seconds, plan
    from .study import collect, finish, reset, run_study
    print(f"study {p.name}: {len(plan(p))} runs of {p.steps} steps; about {estimate_seconds(p) / 60:.0f} min on 2 "
          "quiet CPU cores (estimated from FLOPs against the late recipe's measured speed)", file=sys.stderr, flush=True)
    cancel, started, children = threading.Event(), threading.Event(), []

    def on_term(*_: Any) -> None:  # Cancel: stop after the current step; while the images render, at once
        cancel.set()
        for child in children:
            child.terminate()
        if not started.is_set():
            raise _Stopped
    signal.signal(signal.SIGTERM, on_term)
    if args.json_progress:
        print(json.dumps({"event": "start", "runs": len(plan(p))}), flush=True)
    start, load_before = time.perf_counter(), [round(x, 2) for x in os.getloadavg()]
    if args.workers > 1:
        if not args.resume:
            reset(args.out)
        children += [subprocess.Popen(_worker_argv(args, reverse=k % 2 == 1), stdout=subprocess.DEVNULL)
                     for k in range(1, args.workers)]
    try:
        doc = run_study(p, args.out, device=args.device, resume=args.resume or args.workers > 1,
                        progress=lambda info: _report(args, started, info), cancel=cancel,
                        time_limit=args.time_limit, reverse=args.reverse)
    except _Stopped:
        Path(args.out).mkdir(parents=True, exist_ok=True)
        return finish(p, args.out, [])
    for child in children:
        child.wait()
    if not children:
        return doc
    return collect(p, args.out, {**doc["where"], "workers": args.workers, "load_before": load_before,
                                 "wall_s": round(time.perf_counter() - start, 1)})


def _report(args: argparse.Namespace, started: threading.Event, info: dict[str, Any]) -> None:
    """One progress report: a JSON line (the app's child process) or a line per run on stderr."""
    started.set()
    if args.json_progress:
        print(json.dumps(info), flush=True)
    elif info["event"] == "run":
        print(f"[{info['run']}/{info['runs']}] {info['model']} seed {info['seed']} {info['optimizer']} "
              f"{info['train_size']} images ({info['elapsed']:.0f} s)", file=sys.stderr, flush=True)


def _worker_argv(args: argparse.Namespace, *, reverse: bool) -> list[str]:
    """The command of one more process on the same folder: the same protocol flags, --resume, one share of the
    threads; stderr stays the terminal's, so its runs are listed too."""
    argv = [sys.executable, "-m", "convformer", "study", "--out", str(args.out), "--resume", "--workers", "1",
            "--threads", str(args.threads)]
    argv += ["--quick"] * args.quick + ["--reverse"] * reverse
    for flag in ("seeds", "steps", "device", "time_limit", "nice"):
        value = getattr(args, flag)
        if value:
            argv += [f"--{flag.replace('_', '-')}", str(value)]
    return argv


class _Stopped(Exception):
    """SIGTERM before the first run started."""
