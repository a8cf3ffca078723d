"""The Compare tab's ImageNet table: every fusion stage's published timm reference (convformer.references) on
one photo, each through the one Run path (`engine.measured`) with its `weights.ReferenceWeights` (which
download, load and preprocess it, as for the weights choice "Pretrained on ImageNet" in Explore).
"""
from __future__ import annotations

import gradio as gr
import numpy as np
import pandas as pd

from convformer.references import REFERENCES

from . import engine, views
from .controls import Controls
from .engine import Run
from .i18n import text
from .weights import reference

KIND = "imagenet"
TOP = 3
HEADER_KEYS = ("refs.col_stage", "refs.col_model", "refs.col_top", "compare.col_params", "refs.col_gflops",
               "compare.col_latency")  # the comparison table's columns (the catalogue's keys)


def headers() -> list[str]:
    """The comparison table's column names in the page's language."""
    return [text(k, k=TOP) for k in HEADER_KEYS]


def empty_table() -> dict:
    """The comparison table before a run, its headers in the page's language (set on page load)."""
    return {"headers": headers(), "data": []}


def overlay(r: Run) -> tuple:
    """The picture that says most about a reference: Grad-CAM where it has conv layers, else rollout."""
    if r.cam:
        return views.cam_picture(r), text("refs.cam_at", layer=next(iter(r.cam)))
    return views.rollout_picture(r), text("refs.rollout")


def compare(image: str | None, progress: gr.Progress = gr.Progress(track_tqdm=True)) -> tuple:
    """Every stage's ImageNet reference on one photo: (table, gallery of overlays with captions, a note: empty,
    or one plain line when the weights are not cached and cannot be downloaded)."""
    if not image:
        raise gr.Error(text("compare.first"))
    rows, gallery = [], []
    for i, fusion in enumerate(REFERENCES):
        progress((i, len(REFERENCES)), desc=f"{fusion}: {REFERENCES[fusion].label}", unit="models")
        weights = reference(fusion)
        try:
            weights.fetch(progress)
        except gr.Error:  # not cached, no Hub: one plain line beside the (empty) table, no red badges (issue 27)
            return pd.DataFrame(columns=headers()), [], text("refs.unavailable")
        r, latency = engine.on_model_thread(engine.measured, image, Controls(fusion=fusion, weights=KIND), weights)
        top = np.argsort(-r.probs, kind="stable")[:TOP]
        picture, what = overlay(r)
        shapes = r.shapes
        best = "; ".join(f"{short(r.classes[j])} {r.probs[j]:.1%}" for j in top)
        rows.append([fusion, REFERENCES[fusion].label, best,
                     round(sum(s.params for s in shapes) / 1e6, 2), round(sum(s.flops for s in shapes) / 1e9, 2),
                     views.latency_cell(latency)])
        gallery.append((picture, f"{fusion}: {short(r.classes[top[0]])} ({what})"))
    return pd.DataFrame(rows, columns=headers()), gallery, ""


def short(label: str) -> str:
    """An ImageNet description's first name: 'tabby, tabby cat' -> 'tabby'."""
    return label.split(",", 1)[0]
