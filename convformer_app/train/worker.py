"""One Train-tab run in its own process: `python -m convformer_app.train.worker RUN_DIR [NICE]`.

Inside the server, `fit` ran 1.6-1.7x slower than from the command line: the server's other torch threads
each hold an OpenMP team, so libgomp stops spinning at its barriers, and the server's bounded heap gives
larger activations fresh pages every step (benchmarks/NOTES.md section 10). A child process has its own
OpenMP and heap. No Gradio here, and nothing pickled: the Train tab's thread (`jobs.work`) writes the
splits to RUN_DIR/data.safetensors and the run's settings to RUN_DIR/run.json; this process trains at nice
NICE (the tab's: +10), prints every progress report as one JSON line, stops after the current step on SIGTERM
(Cancel), writes the checkpoint to RUN_DIR as `fit` does, and prints a last line: the result, or the error.
"""
from __future__ import annotations

import json
import os
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from convformer.config import ConvFormerConfig
from convformer.data.datasets import ImageTensors
from convformer.model import ConvFormer
from convformer.train import TrainConfig, fit

SPLITS = ("train", "val", "test")


def write_run(run_dir: Path, splits: dict[str, ImageTensors], cfg: ConvFormerConfig, tcfg: TrainConfig,
              meta: dict[str, Any]) -> None:
    """What the child reads: the splits' tensors (safetensors) and the settings (JSON)."""
    tensors = {}
    for name, split in splits.items():
        tensors[f"{name}.images"], tensors[f"{name}.labels"] = split.images.contiguous(), split.labels.contiguous()
    save_file(tensors, str(run_dir / "data.safetensors"))
    settings = {"config": cfg.to_dict(), "train": {**vars(tcfg), "crop_scale": list(tcfg.crop_scale)},
                "classes": list(splits["train"].classes), "meta": meta}
    (run_dir / "run.json").write_text(json.dumps(settings))


def _emit(event: str, **fields: Any) -> None:
    print(json.dumps({"event": event, **fields}), flush=True)


def at_nice(nice: int) -> None:
    """Run at niceness `nice` (not `nice` more than the parent: a worker started from the tab's training thread
    inherits that thread's +10, and an increment made it +19, last behind every other job of a busy machine)."""
    if hasattr(os, "setpriority"):
        try:
            os.setpriority(os.PRIO_PROCESS, 0, max(nice, os.getpriority(os.PRIO_PROCESS, 0)))
        except OSError:
            pass


def _progress(info: dict[str, Any]) -> None:
    """fit's reports as JSON lines; its "done" report also ends the trained / tested / saved phases."""
    event = info.pop("event")
    if event == "done":  # fit's own clock for the phases after training, placed on the wall clock
        now, timing = time.time(), info["timing"]
        for name, seconds in (("saved", 0.0), ("tested", timing["save"]), ("trained", timing["save"] + timing["test"])):
            _emit("phase", name=name, at=now - seconds)
    _emit(event, **info)


def main(run_dir: Path, nice: int = 10) -> int:
    _emit("phase", name="started", at=time.time())  # Python and torch are imported
    at_nice(nice)
    cancel = threading.Event()
    before = signal.signal(signal.SIGTERM, lambda *_: cancel.set())
    try:
        settings = json.loads((run_dir / "run.json").read_text())
        tensors = load_file(str(run_dir / "data.safetensors"))
        (run_dir / "data.safetensors").unlink()  # read: the disk copy is not needed any more
        classes = settings["classes"]
        splits = {s: ImageTensors(tensors[f"{s}.images"], tensors[f"{s}.labels"], classes)
                  for s in SPLITS if f"{s}.images" in tensors}
        cfg = ConvFormerConfig.from_dict(settings["config"])
        _emit("phase", name="read", at=time.time())
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            model = ConvFormer(cfg.replace(num_classes=len(classes)))
        meta = {**settings["meta"], "params": sum(p.numel() for p in model.parameters())}
        _emit("phase", name="built", at=time.time())
        r = fit(model, splits["train"], splits["val"], TrainConfig(**settings["train"]), cancel=cancel,
                progress=lambda info: _progress(info), out_dir=run_dir, test_set=splits.get("test"), metadata=meta)
    except Exception as e:  # noqa: BLE001 - said to the parent, which words it for the page
        _emit("error", kind=type(e).__name__, message=str(e), refused=isinstance(e, ValueError))
        return 1
    finally:
        signal.signal(signal.SIGTERM, before)
    _emit("result", history=r.history, best=r.best, step_losses=r.step_losses, train_time=r.train_time,
          cancelled=r.cancelled, test=r.test, stop=r.stop)
    return 0


def wait_for_run() -> Path | None:
    """A spare worker (RUN_DIR given as "-"): Python and torch are imported; wait for the run folder on
    stdin. None when stdin closes (the server went away) before a run came."""
    line = sys.stdin.readline().strip()
    return Path(line) if line else None


if __name__ == "__main__":  # RUN_DIR|- [NICE]
    run = Path(sys.argv[1]) if sys.argv[1] != "-" else wait_for_run()
    sys.exit(main(run, *map(int, sys.argv[2:3])) if run is not None else 0)
