"""Run the whole study and put its results in one document: `run_study(protocol, out_dir)`.

Every finished run is appended to out_dir/runs.jsonl at once, so a study that is stopped (Cancel, a time limit,
the machine's clock) keeps what it has, and `resume=True` skips the runs already there. The document
(out_dir/results.json) holds the protocol, the models' parameters and FLOPs, every run, the metrics, the
verdicts and where it ran (device, threads, load average before and after, wall time, complete or not).
"""
from __future__ import annotations

import json
import os
import platform
import shutil
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from .protocol import MODELS, Protocol, RunSpec, estimate_seconds, model_table, plan
from .runs import load_splits, train_run
from .stats import CLAIMS, metrics, verdicts

__all__ = ["document", "finish", "collect", "report_only", "reset", "run_study"]


def _load() -> list[float] | None:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None


def _done(path: Path) -> dict[str, dict]:
    if not path.exists():
        return {}
    runs = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return {RunSpec(r["model"], r["seed"], r["train_size"], r["optimizer"]).key: r for r in runs}


def run_study(p: Protocol, out_dir: str | Path, *, device: str | torch.device | None = None, resume: bool = False,
              progress: Callable[[dict[str, Any]], None] | None = None, cancel: threading.Event | None = None,
              time_limit: float | None = None, reverse: bool = False) -> dict[str, Any]:
    """Run every run of `plan(p)` (skipping those in out_dir/runs.jsonl with `resume`; several processes started
    with `resume` on one folder share the runs, each claiming the next free one; `reverse` walks the plan from
    its end, so a second process takes the costly placement runs while the first takes the cheap ones), then
    write and return the results document. `progress(info)` gets {"event": "run" | "step", "run", "runs", "model", ...};
    `cancel` or `time_limit` (seconds) stop after the current step, and the document says `complete: false`."""
    from ..data.preprocess import pick_device
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    log = out / "runs.jsonl"
    if not resume:
        reset(out)
    done = _done(log)
    device = pick_device(str(device) if device else None)
    start, load_before = time.perf_counter(), _load()
    splits = load_splits(p)
    render_s = time.perf_counter() - start
    todo = plan(p)
    stopped = False
    order = list(enumerate(todo))
    for i, spec in reversed(order) if reverse else order:
        done.update(_done(log))  # another process on the same folder (--resume) may have finished it
        if spec.key in done or not _claim(out, spec):
            continue
        if (cancel is not None and cancel.is_set()) or (time_limit and time.perf_counter() - start > time_limit):
            stopped = True
            break
        info = {"run": i + 1, "runs": len(todo), "model": spec.model, "seed": spec.seed,
                "train_size": spec.train_size, "optimizer": spec.optimizer}
        if progress is not None:
            progress({"event": "run", **info, "elapsed": time.perf_counter() - start})
        step_cb = (lambda s, info=info: progress({"event": "step", **info, **s})) if progress else None
        stop = _Stop(cancel, start, time_limit)
        record = train_run(spec, p, splits, device, progress=step_cb, cancel=stop)
        if record is None:
            stopped = True
            break
        done[spec.key] = record
        with log.open("a") as f:  # one write of one line (O_APPEND): processes sharing the folder do not mix
            f.write(json.dumps(record) + "\n")
    done.update(_done(log))
    runs = [done[s.key] for s in todo if s.key in done]
    return finish(p, out, runs, complete=not stopped and len(runs) == len(todo),
                  where={"device": str(device), "load_before": load_before,
                         "wall_s": round(time.perf_counter() - start, 1), "render_s": round(render_s, 1)})


def reset(out_dir: str | Path) -> None:
    """Forget the runs in out_dir (runs.jsonl and the claims), as a study without --resume does."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "runs.jsonl").unlink(missing_ok=True)
    shutil.rmtree(out / "claims", ignore_errors=True)


def finish(p: Protocol, out_dir: str | Path, runs: list[dict], *, complete: bool = False,
           where: dict[str, Any] | None = None) -> dict[str, Any]:
    """Write (and return) the results document of `runs` to out_dir/results.json."""
    where = {"device": "cpu", "threads": torch.get_num_threads(), "cpu": platform.processor() or platform.machine(),
             "load_before": None, "load_after": _load(), "wall_s": 0.0, "torch": torch.__version__,
             "estimate_s": round(estimate_seconds(p)), **(where or {})}
    doc = document(p, runs, complete=complete, planned=len(plan(p)), where=where)
    (Path(out_dir) / "results.json").write_text(json.dumps(doc, indent=1) + "\n")
    return doc


def collect(p: Protocol, out_dir: str | Path, where: dict[str, Any]) -> dict[str, Any]:
    """The document of every run in out_dir/runs.jsonl once all the processes sharing it have stopped."""
    done = _done(Path(out_dir) / "runs.jsonl")
    runs = [done[s.key] for s in plan(p) if s.key in done]
    return finish(p, out_dir, runs, complete=len(runs) == len(plan(p)), where=where)


def report_only(p: Protocol, out_dir: str | Path) -> dict[str, Any]:
    """The document of the runs already in out_dir/runs.jsonl (a study still running, or stopped)."""
    done = _done(Path(out_dir) / "runs.jsonl")
    runs = [done[s.key] for s in plan(p) if s.key in done]
    return finish(p, out_dir, runs, complete=len(runs) == len(plan(p)), where={
        "threads": None, "wall_s": round(sum(r["seconds"] for r in runs), 1),
        "note": "rebuilt by --report from runs.jsonl: wall_s is the runs' training time summed"})


def _claim(out: Path, spec: RunSpec) -> bool:
    """Claim a run for this process (a file named by the run, holding the pid, created exclusively), so that
    several processes started with --resume on one folder share the plan; a dead process's claim is taken over."""
    folder = out / "claims"
    folder.mkdir(exist_ok=True)
    path = folder / spec.key.replace("|", "_").replace("/", "-")
    for _ in range(2):
        try:
            with path.open("x") as f:
                f.write(str(os.getpid()))
            return True
        except FileExistsError:
            try:
                owner = int(path.read_text() or 0)
                os.kill(owner, 0)  # alive: its run
                return owner == os.getpid()
            except (ValueError, ProcessLookupError, FileNotFoundError):
                path.unlink(missing_ok=True)  # its process is gone: take it over
            except PermissionError:
                return False
    return False


class _Stop:
    """Looks like a threading.Event to `train_run`: set by `cancel` or when the time limit has passed."""

    def __init__(self, cancel: threading.Event | None, start: float, limit: float | None):
        self.cancel, self.start, self.limit = cancel, start, limit

    def is_set(self) -> bool:
        over = self.limit is not None and time.perf_counter() - self.start > self.limit
        return over or (self.cancel is not None and self.cancel.is_set())


def document(p: Protocol, runs: list[dict], *, complete: bool, planned: int, where: dict[str, Any]) -> dict[str, Any]:
    """The results document: protocol, models, runs, metrics, verdicts (with the claims' texts), where."""
    m = metrics(runs, p)
    claims = [{**v, "claim": CLAIMS[v["id"]][0], "test": CLAIMS[v["id"]][1], "at_scale": CLAIMS[v["id"]][2]}
              for v in verdicts(m)]
    return {"protocol": p.to_dict(), "models": model_table(tuple(MODELS)), "complete": complete,
            "runs_done": len(runs), "runs_planned": planned, "where": where, "metrics": m, "claims": claims,
            "runs": runs}
