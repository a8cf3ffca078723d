"""The Train tab: train the architecture set in Explore (random init) on the built-in shapes data or an
uploaded zip of an image folder, with live progress and curves, a Cancel button, and a checkpoint that
becomes this browser session's "trained in this session" weights.

`train` is a generator handler: a background thread loads the data and runs `fit` in a child process
(`worker`, whose OpenMP and heap are its own: 1.3x faster than in the server's process), relaying its
reports through a queue; the generator turns that into page updates. Every run writes into its own fresh
folder under Gradio's temp folder (never a shared name), and the checkpoint path is kept per session in a gr.State. Jobs are bounded
by environment variables, for shared deployments such as Spaces:

    CONVFORMER_MAX_EPOCHS (10)          CONVFORMER_MAX_TRAIN_IMAGES (20000) CONVFORMER_MAX_TRAIN_JOBS (2)
    CONVFORMER_MAX_TRAIN_IMG_SIZE (96)  CONVFORMER_TRAIN_TIME_LIMIT (600 s per run)

The page's defaults are a fusion stage's measured one-minute recipe (`convformer.train.recipes`, default: the
stage that passes 90 % within the minute); the tab estimates a run's time before it starts, draws validation
accuracy against time beside every stage's typical curve, and ends with a verdict. The training thread runs
at a lower CPU priority (nice +10 on Linux) so that the server's other requests keep their latency.

A run stops (and keeps its best checkpoint) when it is cancelled, when it reaches the time limit, and when
nobody has read its progress for ORPHAN_S seconds (the browser went away).
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
import pandas as pd

from convformer.train import recipes
from convformer.data.datasets import SHAPES_CACHE
from convformer.data.folders import LoadingStopped, Stop
from convformer.train import TrainConfig, TrainResult, make_datasets

from .. import engine, safety, views
from . import worker
from .. import i18n
from ..controls import Controls, spread
from ..i18n import text

log = logging.getLogger(__name__)
ROOT = Path(__file__).resolve().parents[2]  # where the child process finds convformer_app and convformer

DATASETS = {"shapes": "Built-in shapes (10 classes, generated)", "zip": "My zip of an image folder"}
ORPHAN_S = 60.0           # no page has read the progress for this long: the run stops
UPDATE_S = 1.0            # at most one page update a second (each costs the browser a redraw: NOTES 12)
TEST_IMAGES = 400         # shapes: a fresh test split, scored once at the end
COLOURS = {"train (per step, smoothed)": "#3b82f6", "validation": "#f97316"}  # the series, as the API names them
TYPICAL = {"late": "#86efac", "cnn": "#cbd5e1", "mid": "#d8b4fe", "early": "#fde68a", "vit": "#fca5a5"}  # faint
NICE = 10                 # the training child's CPU priority (Linux nice), below the serving threads'
R = recipes.RECIPES[recipes.DEFAULT]  # the page's defaults


def colours() -> dict[str, str]:
    """The curves' colours by series name, in the page's language (the names are the legend)."""
    return {text("train.series_train"): COLOURS["train (per step, smoothed)"],
            text("train.series_val"): COLOURS["validation"],
            **{text("train.typical", fusion=f): c for f, c in TYPICAL.items()}}
TRAIN_OUTPUTS = ("status", "loss_plot", "acc_plot", "download", "trained")


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


def limits_text() -> str:
    lim = limits()
    return text("train.limits", epochs=lim.max_epochs, images=lim.max_images, px=lim.max_img_size,
                minutes=f"{lim.time_limit / 60:.0f}", jobs=lim.max_jobs)


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
_LOCK = threading.Lock()


def run_root() -> Path:
    """This process's run folders: one folder per app process (its pid), so that two apps on one machine
    never remove each other's runs."""
    root = Path(gr.utils.get_upload_folder()) / "convformer-train" / str(os.getpid())
    root.mkdir(parents=True, exist_ok=True)
    return root


def prune() -> None:
    """Keep finished runs' folders within CONVFORMER_TRAIN_DISK_MB in all and CONVFORMER_TRAIN_TTL_S each
    (the oldest go first; running ones stay), and forget finished runs whose folder is gone."""
    with _LOCK:
        active = [j.out_dir for j in JOBS.values() if j.running]
    budget = int(float(os.environ.get("CONVFORMER_TRAIN_DISK_MB", "1024")) * 2**20)
    safety.prune_runs(run_root(), budget, float(os.environ.get("CONVFORMER_TRAIN_TTL_S", "3600")), active)
    with _LOCK:
        for key, job in list(JOBS.items()):
            if not job.running and not job.out_dir.exists():
                del JOBS[key]


def clean_start() -> None:
    """At start-up: remove the run folders of app processes that are gone (their sessions went with them);
    another running app's folder stays. Runs of the layout before per-process folders (run-*) go too."""
    for d in run_root().parent.iterdir():
        if not d.name.isdigit() or not _alive(int(d.name)):
            shutil.rmtree(d, ignore_errors=True)


WARM_AFTER_S = 5.0  # start-up: the default run's data renders this long after, once the server is serving


def start_up() -> None:
    """At start-up: remove ended processes' runs, start a spare worker (its own process, nice NICE), and
    shortly after render the default run's data in the background, so that the first Train press of the
    default run waits for neither (benchmarks/NOTES.md, "The default Train press")."""
    clean_start()
    spare()
    cfg = R.model_config().replace(img_size=min(R.img_size, limits().max_img_size))
    timer = threading.Timer(WARM_AFTER_S, warm, (cfg, min(R.train_size, limits().max_images)))
    timer.daemon = True
    timer.start()


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


def _session(request: gr.Request | None) -> str:
    return getattr(request, "session_hash", None) or "no-session"


def _number(name: str, value: Any, lo: float, hi: float, whole: bool = True) -> float:
    try:
        x = float(value)
    except (TypeError, ValueError, OverflowError):
        x = float("nan")
    if not (lo <= x <= hi) or (whole and not x.is_integer()):
        kind = "a whole number" if whole else "a number"
        raise gr.Error(f"{name}={value!r} is not allowed here: expected {kind} from {lo:g} to {hi:g}")
    return int(x) if whole else x


# ---- curves -------------------------------------------------------------------------------------------
def curves(steps: list[float], history: list[dict[str, float]], steps_per_epoch: float) -> tuple:
    """Updates of the two LinePlots (loss; validation accuracy in %), DataFrames of epoch, value, series."""
    every = max(1, len(steps) // 300)
    smooth, rows = None, []
    for i, loss in enumerate(steps):
        smooth = loss if smooth is None else 0.9 * smooth + 0.1 * loss
        if i % every == 0 or i == len(steps) - 1:
            rows.append(((i + 1) / steps_per_epoch, smooth, text("train.series_train")))
    rows += [(float(h["epoch"]), h["val_loss"], text("train.series_val")) for h in history]
    loss = pd.DataFrame(rows, columns=["epoch", "loss", "series"])
    # Gradio 6.31's plot keeps the colour domain of its first data until a prop changes: an (invisible)
    # change of the axis title per epoch makes the validation series appear
    return (gr.update(value=loss, x_title=text("train.axis_epoch") + "\u200b" * len(history),
                      y_title=text("train.axis_loss"), color_map=colours()),
            gr.update(value=accuracy(history), x_title=text("train.axis_seconds") + "\u200b" * len(history),
                      color_map=colours()))


def accuracy(history: list[dict[str, float]]) -> pd.DataFrame:
    """Validation accuracy (%) against seconds: this run's epochs, then every stage's typical curve with its
    recipe (measured on 2 CPU cores), so that a run is seen against what the stages usually do."""
    rows = [(round(h["time"], 1), 100 * h["val_acc"], text("train.series_val")) for h in history]
    for fusion in TYPICAL:
        name = text("train.typical", fusion=fusion)
        rows += [(0.0, 10.0, name), *((t, 100 * a, name) for t, a in recipes.RECIPES[fusion].curve)]
    return pd.DataFrame(rows, columns=["seconds", "accuracy", "series"])


def axes() -> tuple:
    """The two curves' axis titles and legend in the page's language, before any training."""
    return (gr.update(x_title=text("train.axis_epoch"), y_title=text("train.axis_loss"), color_map=colours()),
            gr.update(value=accuracy([]), x_title=text("train.axis_seconds"), y_title=text("train.axis_acc"),
                      color_map=colours()))


MEASURED_AFTER = 5  # steps before the speed measured so far replaces the estimate made before the start


def _status(info: dict[str, Any], dataset: str, estimate: float | None = None,
            limit: float | None = None) -> str:
    """The live status line. After MEASURED_AFTER steps the time left and the whole run's time come from the
    speed measured so far (epoch ends included), said beside the estimate made before the start; a run
    that will pass the server's time limit at this speed says so, and that it will stop there."""
    step, total = info["step"], info["total_steps"]
    out = text("train.status", dataset=dataset, epoch=info["epoch"], epochs=info["epochs"], step=step, total=total,
               pct=f"{100 * step / max(total, 1):.0f}", loss=f"{info['loss']:.3f}")
    if info.get("val_acc") is not None:
        out += text("train.status_val", acc=f"{info['val_acc']:.1%}")
    if step < MEASURED_AFTER:
        return out + text("train.status_measuring", speed=f"{info['images_per_s']:.0f}")
    whole = total * info["elapsed"] / step
    out += text("train.status_end", speed=f"{info['images_per_s']:.0f}", left=f"{whole - info['elapsed']:.0f}",
                whole=f"{whole:.0f}")
    if estimate is not None:
        out += text("train.status_vs", before=f"{estimate:.0f}")
    out += text("train.status_close")
    if limit is not None and whole > limit:
        out += text("train.status_limit", minutes=f"{limit / 60:g}")
    return out


def _final(job: Job, dataset: str) -> str:
    r = job.result
    assert r is not None
    best = r.best
    lim = limits()
    out = {"cancelled": text("train.stopped"), "time_limit": text("train.stopped_time", minutes=f"{lim.time_limit / 60:g}"),
           "target_acc": text("train.stopped_target")}.get(r.stop, text("train.done"))
    took = f"{r.train_time:.0f}" if r.train_time >= 10 else f"{r.train_time:.1f}"
    out += text("train.summary", epochs=f"{r.history[-1]['epoch']:g}", seconds=took, dataset=dataset,
                acc=f"{best['val_acc']:.1%}", best=f"{best['epoch']:g}")
    if r.test is not None:
        out += text("train.test", n=r.test["n"], acc=f"{r.test['acc']:.1%}")
    return (out + text("train.now_yours") + "\n\n" + verdict(job.fusion, best["val_acc"], r.train_time)
            + "\n\n" + where_the_time_went(job))


PHASES = ("data", "written", "started", "read", "built", "trained", "tested", "saved", "ended", "kept")


def where_the_time_went(job: Job) -> str:
    """One line: seconds from pressing Train to the verdict, by phase: the data (rendered or loaded), the
    child process's start (writing the splits, starting Python and torch, reading them back), building the
    model, training, the final test, saving the checkpoint, and the rest (the child's exit, keeping it)."""
    t, at = job.phases, job.pressed
    if not all(p in t for p in PHASES):
        return ""
    parts = {"data": t["data"] - at, "start": t["read"] - t["data"], "build": t["built"] - t["read"],
             "train": t["trained"] - t["built"], "test": t["tested"] - t["trained"], "save": t["saved"] - t["tested"],
             "end": t["kept"] - t["saved"]}
    log.info("train phases (s after the press): %s", {k: round(v - at, 2) for k, v in t.items()})
    return text("train.phases", total=f"{t['kept'] - at:.0f}",
                **{k: f"{v:.1f}" if v < 10 else f"{v:.0f}" for k, v in parts.items()})


def verdict(fusion: str, acc: float, seconds: float) -> str:
    """One line: this run's accuracy and time against its stage's typical curve and the others' times to 90 %."""
    s = recipes.standing(fusion, acc, seconds)
    line = text("train.verdict", fusion=fusion, acc=f"{acc:.1%}", seconds=f"{seconds:.0f}")
    if s.relation != "unknown":
        line += text(f"train.verdict_{s.relation}", typical=f"{s.typical:.0%}")
    ranks = [text("train.verdict_rank", fusion=f, seconds=f"{t:.0f}") if t is not None else
             text("train.verdict_never", fusion=f, best=f"{b:.0%}") for f, t, b in s.ranking]
    return line + text("train.verdict_ranking", ranking=", ".join(ranks))


# ---- the handlers --------------------------------------------------------------------------------------
@spread
def train(dataset: str = "shapes", upload: str | None = None, epochs: float = R.epochs, lr: float = R.lr,
          batch_size: float = R.batch_size, train_images: float = R.train_size, train_img: float = R.img_size,
          controls: Controls = Controls(), model: str = "explore", request: gr.Request = None,
          progress: gr.Progress = gr.Progress()) -> Iterator[tuple]:
    """Train from random init, at the image size `train_img`: the Explore architecture (`controls`) with
    model="explore", else the model of that fusion stage's recipe (the page's default); the stage's recipe
    supplies what the page does not set (augmentation, warm-up, label smoothing). Yield (status, loss curve,
    accuracy curve, checkpoint file, checkpoint path for the session state) as it goes."""
    lim = limits()
    if dataset not in DATASETS:
        raise gr.Error(f"dataset={dataset!r} is not allowed: expected one of {', '.join(DATASETS)}")
    if dataset == "zip" and not upload:
        raise gr.Error("Upload a .zip of an image folder first (one sub-folder per class), or choose the "
                       "built-in shapes.")
    if dataset == "zip" and not str(upload).lower().endswith(".zip"):
        raise gr.Error("The dataset must be a .zip file: one sub-folder per class, images inside.")
    epochs = _number("epochs", epochs, 1, lim.max_epochs)
    images = _number("training images", train_images, 20, lim.max_images)
    size = _number("image size", train_img, 32, lim.max_img_size)
    batch = _number("batch size", batch_size, 1, 512)
    lr = _number("learning rate", lr, 1e-6, 1.0, whole=False)
    cfg = _model_config(model, controls, size)
    owner = _session(request)
    with _LOCK:
        mine = JOBS.get(owner)
        if mine is not None and mine.running:
            raise gr.Error("A training run is already going in this page: wait for it or cancel it.")
        busy = sum(j.running for j in JOBS.values())
        if busy >= lim.max_jobs:
            raise gr.Error(f"{busy} training run(s) are going on this server already (the limit is "
                           f"{lim.max_jobs}); try again in a minute.")
        job = JOBS[owner] = Job(Path(tempfile.mkdtemp(prefix="run-", dir=run_root())))
    prune()  # older runs make room for this one within the disk budget
    name = text("train.builtin") if dataset == "shapes" else f"`{views.code_span(Path(upload).name, 120)}`"
    job.dataset = name
    job.fusion = cfg.fusion
    if dataset == "shapes":
        job.estimate = _estimate_s(cfg, epochs, images)
    rec = recipes.RECIPES[cfg.fusion]
    tcfg = rec.train_config(epochs=epochs, lr=lr, min_lr=min(1e-5, lr), batch_size=batch,
                            warmup_epochs=min(rec.warmup_epochs, epochs), progress_bar=False,
                            device=str(engine.DEVICE), max_epochs=lim.max_epochs, max_images=lim.max_images,
                            time_limit=lim.time_limit)
    job.thread = threading.Thread(target=_work, args=(job, cfg, tcfg, dataset, upload, images),
                                  name=f"train-{owner[:8]}", daemon=True)
    job.thread.start()
    try:
        yield from _follow(job, progress)
    finally:  # the page went away or the event was cancelled: stop the thread (it keeps the best so far)
        job.cancel.set()


def _work(job: Job, cfg, tcfg: TrainConfig, dataset: str, upload: str | None, images: int) -> None:
    """The background thread: load the data, train in a child process, save; report through job.events."""
    def report(info: dict[str, Any]) -> None:
        if time.monotonic() - job.last_seen > ORPHAN_S:
            job.cancel.set()
        job.events.put(info)
    _lower_priority()
    try:
        lim = limits()
        if dataset == "shapes":
            data = make_datasets("shapes", cfg.img_size, train_size=images, val_size=_val_size(images),
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
    with _LOCK:
        proc, _SPARE = _SPARE, None
    return proc if proc is not None and proc.poll() is None else _spawn()


def spare() -> None:
    """Start a spare worker if there is none (at start-up, and after every run): it waits at nice NICE,
    holding ~0.2 GB, and ends with the server (its stdin closes)."""
    global _SPARE
    with _LOCK:
        if _SPARE is None or _SPARE.poll() is not None:
            _SPARE = _spawn()


class TrainingFailed(RuntimeError):
    """The child process failed: `kind` names its exception."""

    def __init__(self, message: str, kind: str = "RuntimeError"):
        super().__init__(message)
        self.kind = kind


def _lower_priority() -> None:
    """Run the calling thread (and the OpenMP workers it starts later, which inherit it) at nice NICE, so a
    training run takes the CPU only when the server's requests leave it free (measured: NOTES section 9).
    Linux only: there a thread is a task with its own nice value."""
    if sys.platform.startswith("linux"):
        try:
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), NICE)
        except OSError:  # not allowed here: train at the normal priority
            log.warning("could not lower the training thread's priority")


def _val_size(images: int) -> int:
    """Shapes validation images for a run of `images` training images (1,000 for the recipes' 10,000)."""
    return min(1000, max(50, images // 5))


def _model_config(model: str, controls: Controls, size: int):
    """The config a run trains: the recipe's model of stage `model`, or Explore's (`model="explore"`)."""
    if model == "explore":
        return controls.replace(img_size=size).config()
    if model not in recipes.RECIPES:
        raise gr.Error(f"model={model!r} is not allowed: expected explore or one of {', '.join(recipes.RECIPES)}")
    try:
        return recipes.RECIPES[model].model_config().replace(img_size=int(float(size)))
    except (TypeError, ValueError, OverflowError) as e:
        raise gr.Error(str(e)) from None


def on_model(model: str) -> tuple:
    """The Model choice: a recipe sets the page's epochs, learning rate, batch size, training images and image
    size to its own; Explore's architecture leaves them as they are."""
    r = recipes.RECIPES.get(model)
    if r is None:
        return (gr.skip(),) * 5
    return r.epochs, r.lr, r.batch_size, r.train_size, r.img_size


_WARMING: set[tuple] = set()


def warm(cfg, images: int) -> None:
    """Render a run's shapes splits into the shared cache in the background (at nice NICE), once, so that the
    first Train press of a session does not wait for them; called when the page describes a run."""
    key = (tuple(cfg.img_size), cfg.in_chans, images)
    with _LOCK:
        if key in _WARMING or images > limits().max_images:
            return
        _WARMING.add(key)

    def render() -> None:
        _lower_priority()
        try:
            make_datasets("shapes", cfg.img_size, in_chans=cfg.in_chans, train_size=images,
                          val_size=_val_size(images), test_size=TEST_IMAGES, seed=0)
        except Exception:  # noqa: BLE001 - a warm-up only; the run itself reports errors
            log.exception("warming the shapes cache failed")
    threading.Thread(target=render, name="warm-shapes", daemon=True).start()


def _estimate_s(cfg, epochs: int, images: int) -> float:
    """The seconds a shapes run should take on 2 CPU cores, rendering what is not cached yet included."""
    val = _val_size(images)
    cached = (min(images, SHAPES_CACHE.cached("train", 0, cfg.img_size, cfg.in_chans)) +
              min(val, SHAPES_CACHE.cached("val", 0, cfg.img_size, cfg.in_chans)))
    return recipes.estimate_seconds(cfg, epochs, images, val, rendered=cached)


def estimate(cfg, epochs: Any, train_images: Any, prefetch: bool = False) -> str:
    """The time a run should take, said before it starts (the stage's recipe scaled by FLOPs and images; the
    images not cached yet are rendered first), and what the stage's recipe reached in its measured run.
    With `prefetch`, the images start rendering in the background now."""
    try:
        epochs, images = int(float(epochs)), int(float(train_images))
    except (TypeError, ValueError, OverflowError):
        return ""
    val = _val_size(images)
    seconds = _estimate_s(cfg, epochs, images)
    render = seconds - recipes.estimate_seconds(cfg, epochs, images, val, rendered=images + val)
    out = text("train.estimate", seconds=f"{seconds:.0f}")
    if prefetch and render >= 1 and 0 < images <= limits().max_images:
        warm(cfg, images)
    if render >= 1:
        out += text("train.estimate_render", seconds=f"{render:.0f}")
    rec = recipes.RECIPES[cfg.fusion]
    out += text("train.estimate_typical", fusion=cfg.fusion, acc=f"{rec.best:.0%}", seconds=f"{rec.seconds:.0f}")
    if engine.DEVICE is not None and engine.DEVICE.type != "cpu":
        out += text("train.estimate_gpu")
    return out


def _follow(job: Job, progress: gr.Progress) -> Iterator[tuple]:
    skip, dataset = gr.skip(), job.dataset
    yield text("train.loading", dataset=dataset), skip, skip, None, skip
    shown = 0.0
    while True:
        job.last_seen = time.monotonic()
        try:
            info = job.events.get(timeout=UPDATE_S)
        except queue.Empty:
            continue
        if info is None:
            break
        job.last = info
        if info["event"] == "step":
            job.steps.append(info["loss"])
        if time.monotonic() - shown < UPDATE_S and info["event"] == "step":
            continue
        shown = time.monotonic()
        progress((info["step"], info["total_steps"]), desc=text("train.progress"), unit="steps")
        spe = info["total_steps"] / info["epochs"]
        yield (_status(info, dataset, job.estimate, limits().time_limit), *curves(job.steps, info["history"], spe),
               skip, skip)
    yield result(job)


def result(job: Job) -> tuple:
    """The final page update of a finished run (also used after Cancel)."""
    if job.error:
        raise gr.Error(job.error)
    r = job.result
    spe = r.history[-1]["step"] / r.history[-1]["epoch"] if r.history[-1]["epoch"] else 1
    return (_final(job, job.dataset), *curves(job.steps or r.step_losses, r.history, spe), str(job.checkpoint),
            str(job.checkpoint))


def cancel(request: gr.Request = None) -> str:
    """The Cancel button: tell this session's run to stop after the current step."""
    job = JOBS.get(_session(request))
    if job is None or not job.running:
        return text("train.nothing")
    job.cancel.set()
    return text("train.stopping")


def after_cancel(request: gr.Request = None) -> tuple:
    """After Cancel: wait for the run's thread to finish, then show its result like a finished run."""
    job = JOBS.get(_session(request))
    if job is None or job.thread is None:
        return (gr.skip(),) * len(TRAIN_OUTPUTS)
    job.thread.join(timeout=120)
    if job.error:
        return (f"■ {views.plain(i18n.translate(job.error), 600)}", gr.skip(), gr.skip(), None, gr.skip())  # written in English by the training thread
    if job.result is None:
        return (text("train.still_stopping"),) + (gr.skip(),) * 4
    return result(job)


def leave(request: gr.Request = None) -> None:
    """demo.unload: the page closed, so its run stops."""
    job = JOBS.pop(_session(request), None)
    if job is not None:
        job.cancel.set()


def dataset_controls(dataset: str) -> tuple:
    """(zip upload visibility, training-images slider visibility) for a dataset choice."""
    return gr.update(visible=dataset == "zip"), gr.update(visible=dataset == "shapes")


@spread
def describe(controls: Controls, train_img: Any = R.img_size, epochs: Any = R.epochs,
             train_images: Any = R.train_size, model: str = "explore") -> str:
    """What a run will train (a recipe's model, or the Explore controls at the Train tab's image size), and
    how long it should take."""
    try:
        cfg = _model_config(model, controls, train_img)
    except gr.Error as e:
        return text("train.cannot_train", px=train_img, detail=i18n.translate(e.message))
    params, tokens = engine.param_count(cfg), cfg.grid_size()[0] * cfg.grid_size()[1]  # exact, from the meta device
    key = "train.model" if model == "explore" else "train.recipe_model"
    how = text("train.muon") if cfg.uses_transformer and recipes.RECIPES[cfg.fusion].optimizer == "muon" else ""
    how += text("train.sincos") if cfg.uses_transformer and cfg.pos_embed == "sincos" else ""
    arch = ([text("train.arch_tokens", embed=cfg.embed_dim, depth=cfg.depth)] if cfg.uses_transformer else []) + (
        [text("train.arch_conv", widths=", ".join(map(str, cfg.conv_widths)))] if cfg.uses_conv else [])
    return text(key, fusion=cfg.fusion, arch=text("train.arch_sep").join(arch), params=views.human(params),
                px=cfg.img_size[0],
                tokens=text("train.tokens", n=tokens) if cfg.uses_transformer else "") + how + estimate(
        cfg, epochs, train_images, prefetch=model != "explore")
