"""The Study tab: the committed results of the fusion study (`python -m convformer study`, docs/study.md) with
their figure and verdicts in the page's language, and the quick study run live with progress and Cancel.

A live study is one of the Train tab's jobs (`train.jobs`: a `Job` in `JOBS`, claimed by `claim`, so the server's limit on
concurrent runs and one run per page cover both tabs): `python -m convformer study --quick --json-progress` in a
child process at the Train tab's nice and time limit, started and stopped by `jobs.run_child` (Cancel:
SIGTERM; the child keeps the runs it finished and writes a partial document).
"""
from __future__ import annotations

import json
import sys
import threading
import time
from collections.abc import Iterator
from functools import lru_cache
from pathlib import Path
from typing import Any

import gradio as gr

from convformer.study import QUICK, RESULTS
from convformer.study.report import cells, columns, fmt, table

from . import engine
from .train import jobs as train_tab
from .train.handlers import UPDATE_S
from .i18n import LANG, text

CLAIM_IDS = ("early_faster", "early_loses_local", "mid_placement", "late_best", "late_misses_interaction")
STUDY_OUTPUTS = ("status", "live_results", "live_plot")


def load(path: Path = RESULTS) -> dict[str, Any] | None:
    """A results document, or None if there is none (or it cannot be read)."""
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None


def results_markdown(doc: dict[str, Any] | None) -> str:
    """The document as Markdown in the page's language: how it ran, the table, late / placement, the claims."""
    if doc is None:
        return text("study.none")
    p, m, w = doc["protocol"], doc["metrics"], doc["where"]
    lb = m["late_branches"]
    head = [text(f"study.col.{k}", **v) for k, v in columns(doc)]
    out = [text("study.head", name=p["name"], done=doc["runs_done"], planned=doc["runs_planned"],
                seeds=", ".join(map(str, p["seeds"])), steps=p["steps"], batch=p["batch_size"], device=w["device"],
                threads=w.get("threads") or "-", wall=f"{w['wall_s']:.0f}", before=w["load_before"], after=w["load_after"]),
           text("study.partial") if not doc["complete"] else "", text("study.values"), "",
           table(head, cells(doc)), "",
           text("study.late", late=fmt(m["late"]["final_acc"]), cnn=fmt(lb["late/cnn"]), vit=fmt(lb["late/vit"]),
                better=lb["better"] or "-", gain=fmt(lb["gain"])),
           text("study.placement", one=fmt(m["placement"]["1"]), two=fmt(m["placement"]["2"]),
                three=fmt(m["placement"]["3"])), "", text("study.rule"), ""]
    rows = []
    for c in doc["claims"]:
        verdict = f"**{text('study.verdict.' + c['verdict'])}**"
        if c["verdict"] == "inconclusive" and c.get("lean"):
            verdict += text("study.lean", lean=text("study.verdict." + c["lean"]))
        rows.append([text(f"study.claim.{c['id']}"), verdict, text(f"study.test.{c['id']}"),
                     text(f"study.scale.{c['id']}")])
    out.append(table([text("study.col.claim"), text("study.col.verdict"), text("study.col.test"),
                      text("study.col.scale")], rows))
    return "\n".join(out)


@lru_cache(maxsize=1)
def _cjk_font() -> str | None:
    """A font with Chinese glyphs matplotlib can use, if the machine has one."""
    from matplotlib import font_manager
    for name in ("Noto Sans CJK SC", "Noto Serif CJK SC", "WenQuanYi Zen Hei", "Source Han Sans SC"):
        try:
            font_manager.findfont(name, fallback_to_default=False)
            return name
        except ValueError:
            continue
    return None


def figure(doc: dict[str, Any] | None):
    """The study's figure with titles in the page's language (English where no Chinese font is installed)."""
    if doc is None:
        return None
    from convformer.study.plots import figure as draw
    keys = ("final", "steps", "half", "sizes", "gap", "sgd", "noise", "late", "placement", "acc", "points", "steps_axis",
            "images")
    font = _cjk_font()
    if LANG.get() != "en" and font is None:
        return draw(doc)
    fig = draw(doc, {k: text(f"study.plot.{k}") for k in keys})
    if font is not None:
        for t in fig.findobj(lambda a: hasattr(a, "set_fontfamily")):
            t.set_fontfamily(["DejaVu Sans", font])
    return fig


def committed() -> tuple[str, Any]:
    """The committed results: Markdown and figure (on load and when the language changes)."""
    doc = load()
    return results_markdown(doc), figure(doc)


def _status(info: dict[str, Any]) -> str:
    if info["event"] == "start":
        return text("study.rendering", runs=info["runs"])
    if info["event"] == "step":
        return text("study.status_step", run=info["run"], runs=info["runs"], model=info["model"], seed=info["seed"],
                    images=info["train_size"], optimizer=info["optimizer"], step=info["step"], steps=info["steps"],
                    acc=f"{info['val_acc']:.0%}")
    return text("study.status_run", run=info["run"], runs=info["runs"], model=info["model"], seed=info["seed"],
                images=info["train_size"], optimizer=info["optimizer"])


def run_quick(request: gr.Request = None, progress: gr.Progress = gr.Progress()) -> Iterator[tuple]:
    """Run the quick study in a child process; yield (status, results Markdown, figure) as it goes."""
    job = _start(request)
    skip = gr.skip()
    yield text("study.starting"), skip, skip
    shown = 0.0
    try:
        for info in train_tab.events(job, UPDATE_S):
            if time.monotonic() - shown < UPDATE_S and info["event"] == "step":
                continue
            shown = time.monotonic()
            if "run" in info:
                progress((info["run"] - 1 + info.get("step", 0) / info.get("steps", 1)) / info["runs"],
                         desc=text("study.progress"))
            yield _status(info), skip, skip
        yield finished(job)
    finally:  # the page went away or the event was cancelled: the child stops (keeping its finished runs)
        job.cancel.set()


def _start(request: gr.Request | None) -> train_tab.Job:
    lim, owner = train_tab.limits(), train_tab.session_of(request)
    if QUICK.full_size > lim.max_images:
        raise gr.Error(text("study.too_big", images=QUICK.full_size, limit=lim.max_images))
    job = train_tab.claim(owner, "study-", lambda busy, limit: text("study.busy_page") if busy is None else
                          text("study.busy_server", busy=busy, limit=limit))
    job.thread = threading.Thread(target=_work, args=(job, lim.time_limit), name=f"study-{owner[:8]}", daemon=True)
    job.thread.start()
    return job


def _work(job: train_tab.Job, time_limit: float) -> None:
    """The background thread: the study's child process, its JSON lines passed on to job.events."""
    argv = [sys.executable, "-m", "convformer", "study", "--quick", "--json-progress", "--out", str(job.out_dir),
            "--time-limit", f"{time_limit:g}", "--nice", str(train_tab.NICE)]
    if engine.DEVICE is not None:
        argv += ["--device", str(engine.DEVICE)]
    try:
        last, code = train_tab.run_child(job, argv, lambda info: info["event"] == "done" or job.events.put(info))
        if last.get("event") != "done":
            job.error = text("study.failed", detail=last.get("message", f"exit code {code}"))
    except Exception as e:  # noqa: BLE001 - said on the page
        job.error = text("study.failed", detail=type(e).__name__)
    finally:
        job.running = False
        job.events.put(None)


def finished(job: train_tab.Job) -> tuple:
    """The final page update of a live study (also after Cancel): its (partial) results and figure."""
    doc = load(job.out_dir / "results.json")
    if job.error and doc is None and not job.cancel.is_set():
        raise gr.Error(job.error)
    if doc is None or not doc["runs_done"]:
        return text("study.stopped_none"), "", None
    key = "study.done" if doc["complete"] else "study.stopped"
    return text(key, done=doc["runs_done"], planned=doc["runs_planned"]), results_markdown(doc), figure(doc)


def cancel(request: gr.Request = None) -> str:
    """The Cancel button: the study stops after the current step."""
    job = train_tab.JOBS.get(train_tab.session_of(request))
    if job is None or not job.running:
        return text("study.nothing")
    job.cancel.set()
    return text("study.stopping")


def after_cancel(request: gr.Request = None) -> tuple:
    """After Cancel: wait for the child to write what it has, then show it."""
    job = train_tab.JOBS.get(train_tab.session_of(request))
    if job is None or job.thread is None:
        return (gr.skip(),) * len(STUDY_OUTPUTS)
    job.thread.join(timeout=120)
    return finished(job)
