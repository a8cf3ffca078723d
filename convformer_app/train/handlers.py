"""The Train tab: train the architecture set in Explore (random init) on the built-in shapes data or an
uploaded zip of an image folder, with live progress and curves, a Cancel button, and a checkpoint that
becomes this browser session's "trained in this session" weights.

`train` is a generator handler: it claims a job (`jobs`: a background thread loads the data and runs `fit` in a
child process, `worker`, whose OpenMP and heap are its own: 1.3x faster than in the server's process, relaying
its reports through a queue) and turns the job's reports into page updates. Every run writes into its own fresh
folder under Gradio's temp folder (never a shared name), and the checkpoint path is kept per session in a
gr.State. Jobs are bounded by environment variables, for shared deployments such as Spaces:

    CONVFORMER_MAX_EPOCHS (10)          CONVFORMER_MAX_TRAIN_IMAGES (20000) CONVFORMER_MAX_TRAIN_JOBS (2)
    CONVFORMER_MAX_TRAIN_IMG_SIZE (96)  CONVFORMER_TRAIN_TIME_LIMIT (600 s per run)

The page's defaults are a fusion stage's measured one-minute recipe (`convformer.train.recipes`, default: the
stage that passes 90 % within the minute); the tab estimates a run's time before it starts, draws validation
accuracy against time beside every stage's typical curve, and ends with a verdict. The training thread runs
at a lower CPU priority (nice +10 on Linux) so that the server's other requests keep their latency.

A run stops (and keeps its best checkpoint) when it is cancelled, when it reaches the time limit, and when
nobody has read its progress for jobs.ORPHAN_S seconds (the browser went away).
"""
from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import gradio as gr

from convformer.data.datasets import SHAPES_CACHE
from convformer.train import make_datasets, recipes

from .. import engine, i18n, views
from ..controls import Controls, spread
from ..i18n import text
from .curves import curves
from .jobs import (JOBS, LOCK, TEST_IMAGES, Job, claim, clean_start, events, limits, lower_priority, session_of,
                   spare, val_size, work)

log = logging.getLogger(__name__)

DATASETS = {"shapes": "Built-in shapes (10 classes, generated)", "zip": "My zip of an image folder"}
UPDATE_S = 1.0            # at most one page update a second (each costs the browser a redraw: NOTES 12)
R = recipes.RECIPES[recipes.DEFAULT]  # the page's defaults


TRAIN_OUTPUTS = ("status", "loss_plot", "acc_plot", "download", "trained")


def limits_text() -> str:
    lim = limits()
    return text("train.limits", epochs=lim.max_epochs, images=lim.max_images, px=lim.max_img_size,
                minutes=f"{lim.time_limit / 60:.0f}", jobs=lim.max_jobs)


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


def _number(name: str, value: Any, lo: float, hi: float, whole: bool = True) -> float:
    try:
        x = float(value)
    except (TypeError, ValueError, OverflowError):
        x = float("nan")
    if not (lo <= x <= hi) or (whole and not x.is_integer()):
        kind = "a whole number" if whole else "a number"
        raise gr.Error(f"{name}={value!r} is not allowed here: expected {kind} from {lo:g} to {hi:g}")
    return int(x) if whole else x


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
    owner = session_of(request)
    job = claim(owner, "run-", _refusal)
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
    job.thread = threading.Thread(target=work, args=(job, cfg, tcfg, dataset, upload, images),
                                  name=f"train-{owner[:8]}", daemon=True)
    job.thread.start()
    try:
        yield from _follow(job, progress)
    finally:  # the page went away or the event was cancelled: stop the thread (it keeps the best so far)
        job.cancel.set()


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
    with LOCK:
        if key in _WARMING or images > limits().max_images:
            return
        _WARMING.add(key)

    def render() -> None:
        lower_priority()
        try:
            make_datasets("shapes", cfg.img_size, in_chans=cfg.in_chans, train_size=images,
                          val_size=val_size(images), test_size=TEST_IMAGES, seed=0)
        except Exception:  # noqa: BLE001 - a warm-up only; the run itself reports errors
            log.exception("warming the shapes cache failed")
    threading.Thread(target=render, name="warm-shapes", daemon=True).start()


def _estimate_s(cfg, epochs: int, images: int) -> float:
    """The seconds a shapes run should take on 2 CPU cores, rendering what is not cached yet included."""
    val = val_size(images)
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
    val = val_size(images)
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


def _refusal(busy: int | None, limit: int) -> str:
    if busy is None:
        return "A training run is already going in this page: wait for it or cancel it."
    return f"{busy} training run(s) are going on this server already (the limit is {limit}); try again in a minute."


def _follow(job: Job, progress: gr.Progress) -> Iterator[tuple]:
    skip, dataset = gr.skip(), job.dataset
    yield text("train.loading", dataset=dataset), skip, skip, None, skip
    shown = 0.0
    for info in events(job, UPDATE_S):
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
    if job.error and job.cancel.is_set():  # the user's own Cancel (e.g. before training started): a status, not an error
        return (f"■ {views.plain(i18n.translate(job.error), 600)}", gr.skip(), gr.skip(), None, gr.skip())
    if job.error:
        raise gr.Error(job.error)
    r = job.result
    spe = r.history[-1]["step"] / r.history[-1]["epoch"] if r.history[-1]["epoch"] else 1
    return (_final(job, job.dataset), *curves(job.steps or r.step_losses, r.history, spe), str(job.checkpoint),
            str(job.checkpoint))


def cancel(request: gr.Request = None) -> str:
    """The Cancel button: tell this session's run to stop after the current step."""
    job = JOBS.get(session_of(request))
    if job is None or not job.running:
        return text("train.nothing")
    job.cancel.set()
    return text("train.stopping")


def after_cancel(request: gr.Request = None) -> tuple:
    """After Cancel: wait for the run's thread to finish, then show its result like a finished run."""
    job = JOBS.get(session_of(request))
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
    job = JOBS.pop(session_of(request), None)
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
