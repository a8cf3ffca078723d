"""A Train-tab job's life, apart from the page: the session's run folder, the limits of this server, the
background thread that loads the data and trains in a child process (`worker`: its own OpenMP team and heap,
nice NICE, a spare one started ahead), relaying the child's reports through a queue, and the clean-up (runs
pruned within a disk budget, the folders of ended app processes removed, a session's checkpoint forgotten with
it). The Study tab's live study is such a job too (`claim`, `run_child`).

handlers.py turns a job's reports into page updates; nothing here draws anything.
"""
from __future__ import annotations

import dataclasses
import json
import logging
import os
import queue
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import gradio as gr

from convformer.data.folders import LoadingStopped, Stop
from convformer.train import TrainConfig, TrainResult, make_datasets

from .. import safety, views
from . import worker

log = logging.getLogger(__name__)
ROOT = Path(__file__).resolve().parents[2]  # where the child process finds convformer_app and convformer
ORPHAN_S = 60.0           # no page has read the progress for this long: the run stops
TEST_IMAGES = 400         # shapes: a fresh test split, scored once at the end
NICE = 10                 # the training child's CPU priority (Linux nice), below the serving threads'


@dataclass(frozen=True)
class Limits:
    max_epochs: int
    max_images: int
    max_jobs: int
    max_img_size: int
    time_limit: float


def limits() -> Limits:
    """The limits of this server, read from the environment (defaults suit a 2-vCPU Space)."""
    env = os.environ.get
    return Limits(int(env("CONVFORMER_MAX_EPOCHS", "10")), int(env("CONVFORMER_MAX_TRAIN_IMAGES", "20000")),
                  int(env("CONVFORMER_MAX_TRAIN_JOBS", "2")), int(env("CONVFORMER_MAX_TRAIN_IMG_SIZE", "96")),
                  float(env("CONVFORMER_TRAIN_TIME_LIMIT", "600")))


@dataclass
class Job:
    """One training run of one session: its thread, what it reported, and how to stop it."""
    out_dir: Path
    cancel: threading.Event = field(default_factory=threading.Event)
    events: queue.Queue = field(default_factory=queue.Queue)
    thread: threading.Thread | None = None
    running: bool = True
    last_seen: float = field(default_factory=time.monotonic)
    last: dict[str, Any] | None = None      # the latest progress report
    result: TrainResult | None = None
    error: str | None = None
    checkpoint: Path | None = None
    dataset: str = "your data"
    fusion: str = "mid"
    steps: list[float] = field(default_factory=list)
    estimate: float | None = None           # seconds, said before the start (recipe-scaled)
    pressed: float = field(default_factory=time.time)  # wall clock (the child's phases use it too)
    phases: dict[str, float] = field(default_factory=dict)  # phase -> wall clock when it ended (PHASES)


JOBS: dict[str, Job] = {}   # session hash -> its latest run (for Cancel and for leaving the page)
LOCK = threading.Lock()  # guards JOBS and the spare worker


def run_root() -> Path:
    """This process's run folders: one folder per app process (its pid), so that two apps on one machine
    never remove each other's runs."""
    root = Path(gr.utils.get_upload_folder()) / "convformer-train" / str(os.getpid())
    root.mkdir(parents=True, exist_ok=True)
    return root


def prune() -> None:
    """Keep finished runs' folders within CONVFORMER_TRAIN_DISK_MB in all and CONVFORMER_TRAIN_TTL_S each
    (the oldest go first; running ones stay), and forget finished runs whose folder is gone."""
    with LOCK:
        active = [j.out_dir for j in JOBS.values() if j.running]
    budget = int(float(os.environ.get("CONVFORMER_TRAIN_DISK_MB", "1024")) * 2**20)
    safety.prune_runs(run_root(), budget, float(os.environ.get("CONVFORMER_TRAIN_TTL_S", "3600")), active)
    with LOCK:
        for key, job in list(JOBS.items()):
            if not job.running and not job.out_dir.exists():
                del JOBS[key]


def clean_start() -> None:
    """At start-up: remove the run folders of app processes that are gone (their sessions went with them);
    another running app's folder stays. Runs of the layout before per-process folders (run-*) go too."""
    for d in run_root().parent.iterdir():
        if not d.name.isdigit() or not _alive(int(d.name)):
            shutil.rmtree(d, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)  # signal 0: only asks whether the process exists
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def forget(path: str | None) -> None:
    """gr.State delete callback: remove a session's trained checkpoint folder when the session ends."""
    if path and Path(path).parent.parent == run_root():
        shutil.rmtree(Path(path).parent, ignore_errors=True)


def session_of(request: gr.Request | None) -> str:
    """The key of a request's session in JOBS."""
    return getattr(request, "session_hash", None) or "no-session"


def claim(owner: str, prefix: str, refuse: Callable[[int | None, int], str]) -> Job:
    """A new job for session `owner` in a fresh folder `prefix`* under run_root() (older runs pruned to make
    room), or gr.Error(refuse(None, limit)) when this page runs one already, gr.Error(refuse(busy, limit)) when
    the server runs its limit of jobs."""
    lim = limits()
    with LOCK:
        mine = JOBS.get(owner)
        if mine is not None and mine.running:
            raise gr.Error(refuse(None, lim.max_jobs))
        busy = sum(j.running for j in JOBS.values())
        if busy >= lim.max_jobs:
            raise gr.Error(refuse(busy, lim.max_jobs))
        job = JOBS[owner] = Job(Path(tempfile.mkdtemp(prefix=prefix, dir=run_root())))
    prune()
    return job


def work(job: Job, cfg, tcfg: TrainConfig, dataset: str, upload: str | None, images: int) -> None:
    """The background thread: load the data, train in a child process, save; report through job.events."""
    def report(info: dict[str, Any]) -> None:
        if time.monotonic() - job.last_seen > ORPHAN_S:
            job.cancel.set()
        job.events.put(info)
    lower_priority()
    try:
        lim = limits()
        if dataset == "shapes":
            data = make_datasets("shapes", cfg.img_size, train_size=images, val_size=val_size(images),
                                 test_size=TEST_IMAGES, seed=0)
        else:
            stop = Stop.after(lim.time_limit, job.cancel)  # Cancel and the time limit cover loading too
            data = make_datasets(str(upload), cfg.img_size, max_images=lim.max_images, seed=0, stop=stop)
            tcfg = dataclasses.replace(tcfg, time_limit=max(1.0, stop.deadline - time.monotonic()))
        if job.cancel.is_set():
            raise InterruptedError
        job.phases["data"] = time.time()
        meta = {"dataset": data.name, "data": data.info, "trained_in": "ConvFormer Lab, Train tab"}
        job.result = _fit_in_child(job, cfg, tcfg, data, meta, report)
        nice = job.out_dir / f"convformer_{cfg.fusion}_{Path(data.name).stem or 'data'}.safetensors"
        os.replace(job.out_dir / "best.safetensors", nice)  # one copy on disk, not two
        job.checkpoint = nice
        job.phases["kept"] = time.time()
    except InterruptedError:
        job.error = "Cancelled before training started."
    except LoadingStopped as e:  # Cancel or the time limit, while the zip's images were loading
        job.error = f"Stopped before training: {e}."
    except ValueError as e:  # DatasetError, a config or split the limits refuse
        job.error = f"This dataset cannot be used: {views.clean(e)}"
    except Exception as e:  # noqa: BLE001 - reported on the page, logged here
        log.exception("training failed")
        job.error = f"Training failed ({getattr(e, 'kind', type(e).__name__)}): {views.clean(e)}"
    finally:
        job.running = False
        job.events.put(None)
        spare()  # the next run's worker imports torch now, while nobody is training in this page


def run_child(job: Job, argv: list[str] | subprocess.Popen, report: Callable[[dict[str, Any]], None]
              ) -> tuple[dict[str, Any], int]:
    """Run `argv` (a Python child of this package: its own OpenMP team and heap; or such a child already
    started, stdout piped, e.g. the spare worker) until it ends, passing each
    JSON line it prints to `report`; Cancel (or the page gone: job.cancel) becomes SIGTERM, once. Returns (the
    last JSON line, exit code). The Train tab's worker and the Study tab's study run through it."""
    proc = argv if isinstance(argv, subprocess.Popen) else subprocess.Popen(argv, stdout=subprocess.PIPE, text=True,
                                                                            env=_child_env())

    def pass_cancel() -> None:  # until the child ends: Cancel (or the page gone) becomes SIGTERM, once
        while proc.poll() is None:
            if job.cancel.wait(0.5):
                proc.terminate()
                return
    threading.Thread(target=pass_cancel, name="child-cancel", daemon=True).start()
    last: dict[str, Any] = {}
    try:
        for line in proc.stdout:
            if line.startswith("{"):  # the child's lines; anything else a library printed is not ours
                last = json.loads(line)
                report(last)
        code = proc.wait()
    finally:
        if proc.poll() is None:  # this thread failed: the child does not outlive it
            proc.kill()
    return last, code


def _fit_in_child(job: Job, cfg, tcfg: TrainConfig, data, meta: dict[str, Any],
                  report: Callable[[dict[str, Any]], None]) -> TrainResult:
    """`fit` in a child process (`worker`: its own OpenMP team and heap, nice NICE), its progress
    reports passed on to `report`, Cancel passed on as SIGTERM; the result without a model (the checkpoint
    is in job.out_dir). Raises ValueError for what `fit` refuses, TrainingFailed for any other failure."""
    splits = {"train": data.train, "val": data.val, **({"test": data.test} if data.test is not None else {})}
    worker.write_run(job.out_dir, splits, cfg, dataclasses.replace(tcfg, curves=False), meta)
    job.phases["written"] = time.time()
    proc = _worker()  # the spare worker, torch already imported; it reads its run folder from stdin
    proc.stdin.write(f"{job.out_dir}\n")
    proc.stdin.close()

    def relay(info: dict[str, Any]) -> None:
        if info["event"] == "phase":
            job.phases[info["name"]] = info["at"]
        elif info["event"] not in ("result", "error"):
            report(info)
    try:
        last, code = run_child(job, proc, relay)
        job.phases["ended"] = time.time()
    finally:
        (job.out_dir / "data.safetensors").unlink(missing_ok=True)  # the child removes it once read; or it died
    if last.get("event") == "result":
        return TrainResult(None, last["history"], last["best"], last["step_losses"], last["train_time"],
                           last["cancelled"], job.out_dir / "best.safetensors", last["test"], last["stop"])
    if last.get("event") == "error" and last["refused"]:  # a ValueError in the child: what fit refuses
        raise ValueError(last["message"])
    if last.get("event") == "error":
        raise TrainingFailed(last["message"], kind=last["kind"])
    raise TrainingFailed(f"the training process ended with exit code {code}")


_SPARE: subprocess.Popen | None = None  # a worker that has imported torch and waits for its run folder


def _child_env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, (str(ROOT), os.environ.get("PYTHONPATH"))))}


def _spawn() -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "convformer_app.train.worker", "-", str(NICE)],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=_child_env())


def _worker() -> subprocess.Popen:
    """The spare worker when there is one (its 2-3 s of starting Python and importing torch already spent),
    else a new one; a new spare starts when this run ends (`spare`)."""
    global _SPARE
    with LOCK:
        proc, _SPARE = _SPARE, None
    return proc if proc is not None and proc.poll() is None else _spawn()


def spare() -> None:
    """Start a spare worker if there is none (at start-up, and after every run): it waits at nice NICE,
    holding ~0.2 GB, and ends with the server (its stdin closes)."""
    global _SPARE
    with LOCK:
        if _SPARE is None or _SPARE.poll() is not None:
            _SPARE = _spawn()


class TrainingFailed(RuntimeError):
    """The child process failed: `kind` names its exception."""

    def __init__(self, message: str, kind: str = "RuntimeError"):
        super().__init__(message)
        self.kind = kind


def lower_priority() -> None:
    """Run the calling thread (and the OpenMP workers it starts later, which inherit it) at nice NICE, so a
    training run takes the CPU only when the server's requests leave it free (measured: NOTES section 9).
    Linux only: there a thread is a task with its own nice value."""
    if sys.platform.startswith("linux"):
        try:
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), NICE)
        except OSError:  # not allowed here: train at the normal priority
            log.warning("could not lower the training thread's priority")


def val_size(images: int) -> int:
    """Shapes validation images for a run of `images` training images (1,000 for the recipes' 10,000)."""
    return min(1000, max(50, images // 5))


def events(job: Any, wait: float) -> Iterator[dict]:
    """A running job's progress reports, in order, until its child says it is done (None); the job stays marked
    as watched (`last_seen`) and keeps the latest report (`last`) while the page waits."""
    while True:
        job.last_seen = time.monotonic()
        try:
            info = job.events.get(timeout=wait)
        except queue.Empty:
            continue
        if info is None:
            return
        job.last = info
        yield info
