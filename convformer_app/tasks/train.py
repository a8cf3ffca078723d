"""Train, per task: a detector or segmenter of a fusion stage on Shapes scenes (the library's measured recipe,
`convformer.tasks.recipes`, through the same `fit` parts as classification), its metric (mAP@0.5 or mIoU on
the validation scenes) drawn live against time. The checkpoint becomes this session's "trained" weights, which
Explore's Detect / Segment read.

The run is a thread of the server (a task run is short and small; classification's child process is not
reused here). It takes one of the server's training slots, as the Train and Study tabs' runs do
(`train_tab.claim`: one per page, at most CONVFORMER_MAX_TRAIN_JOBS on the server, its folder pruned with theirs);
leaving the page or pressing Stop ends it after the current step.
"""
from __future__ import annotations

import queue
import threading
from collections.abc import Iterator
from pathlib import Path

import gradio as gr
import pandas as pd

from ..train import jobs as train_tab
from ..i18n import text
from . import handlers

MAX_SECONDS = 300


def curve(history: list[dict], metric: str) -> pd.DataFrame:
    """The metric against training time: (seconds, value, series)."""
    frame = pd.DataFrame([(float(h.get("time", 0.0)), float(h["val_metric"]), metric) for h in history
                          if h.get("val_metric") is not None], columns=["seconds", "metric", "series"])
    # numbers even before the first epoch: an empty frame's columns are objects, which the plot took for names
    # (a point scale, where y_lim is dropped with a console warning per draw)
    return frame.astype({"seconds": float, "metric": float})


def chart(history: list[dict], metric: str) -> pd.DataFrame | None:
    """What the plot shows: the curve, or nothing before the first point (an empty frame drew an axis of
    infinite extent, with a console warning per draw)."""
    frame = curve(history, metric)
    return frame if len(frame) else None


def train_task(task: str = "detect", fusion: str = "mid", head: str = "dense", seconds: float = 60,
               request: gr.Request = None) -> Iterator[tuple]:
    """Train `task` on `fusion` for at most `seconds`; yields (status, curve, checkpoint path) as it goes; the
    last checkpoint path is the session's trained weights."""
    from convformer.tasks.recipes import task_recipe, run_recipe
    if task not in ("detect", "segment"):
        raise gr.Error(text("task.unknown", task=repr(task)[:40], choices="detect, segment"))
    try:
        seconds = float(seconds)
    except (TypeError, ValueError):
        seconds = float("nan")
    if not 10 <= seconds <= MAX_SECONDS:
        raise gr.Error(f"seconds={seconds!r} is not allowed: expected a number from 10 to {MAX_SECONDS}")
    recipe = task_recipe(task, fusion, head if task == "detect" else "").replace(time_limit=seconds)
    job = train_tab.claim(train_tab.session_of(request), f"{task}-{fusion}-", lambda busy, limit: text(
        "ttrain.busy") if busy is None else text("train.busy_server", busy=busy, limit=limit))
    cancel, events, out_dir = job.cancel, queue.Queue(), job.out_dir
    box: dict = {}

    def work() -> None:
        try:
            box["result"] = run_recipe(recipe, out_dir=out_dir, progress=events.put, cancel=cancel)
        except Exception as e:  # noqa: BLE001 - said on the page in one line
            box["error"] = handlers.clean(e)
        finally:
            events.put({"event": "end"})

    job.thread = thread = threading.Thread(target=work, name=f"convformer-task-train-{out_dir.name}", daemon=True)
    thread.start()
    metric = recipe.metric
    history: list[dict] = []
    try:
        yield text("ttrain.starting", task=task, fusion=fusion, s=f"{seconds:g}"), chart(history, metric), gr.skip()
        while True:
            info = events.get()
            if info["event"] == "end":
                break
            if info["event"] == "epoch":
                history = info["history"]
                said = text("ttrain.epoch", epoch=f"{info['epoch']:g}", metric=metric,
                            value=f"{info['val_metric']:.3f}", t=f"{info['time']:.0f}")
                yield said, chart(history, metric), gr.skip()
    finally:
        cancel.set()  # the page went away or Stop: the thread ends after its step
        thread.join()
        job.running = False
    if "error" in box:
        raise gr.Error(text("ttrain.failed", error=box["error"]))
    r = box["result"]
    test = (r.test or {}).get(metric)
    done = text("ttrain.done", metric=metric, best=f"{r.best.get('val_metric', 0):.3f}", t=f"{r.train_time:.0f}",
                test=f"{test:.3f}" if test is not None else "—")
    yield done, chart(r.history, metric), str(r.checkpoint) if r.checkpoint else gr.skip()


def stop(request: gr.Request = None) -> str:
    """Stop this session's task run after its current step."""
    job = train_tab.JOBS.get(train_tab.session_of(request))
    if job is None or not job.running:
        return text("ttrain.nothing")
    job.cancel.set()
    return text("ttrain.stopping")
