"""Compare, per task: every fusion stage's detector or segmenter on the same image, side by side, with its
metric (the bundled checkpoint's record, scored on an unseen Shapes-scenes split), parameters, FLOPs and
latency on this device."""
from __future__ import annotations

import gradio as gr
import numpy as np
from PIL import Image

from convformer.config import FUSIONS
from convformer.data import preprocess
from convformer.timing import forward_latency

from .. import engine as session, views
from ..i18n import text
from . import handlers, inspect, results
from .results import DetectResult, SegmentResult

METRIC = {"detect": ("test_map_50", "mAP@0.5"), "segment": ("test_miou", "mIoU")}
HEADERS = ["stage", "weights", "metric", "params (M)", "MFLOPs", "latency (ms)", "found"]


def compare_task(task: str, image: str | None) -> tuple[list[tuple[Image.Image, str]], dict]:
    """Every stage's bundled `task` model on one image: (its pictures with captions, the table of HEADERS)."""
    if task not in ("detect", "segment"):
        raise gr.Error(text("task.unknown", task=repr(task)[:40], choices="detect, segment"))
    shown = session.picture(image)
    pictures, rows = [], []
    for fusion in FUSIONS:
        picture, row = _stage(task, fusion, shown)
        pictures.append((picture, f"{fusion}: {row[-1]}"))
        rows.append(row)
    return pictures, {"headers": headers(task), "data": rows}


def headers(task: str = "detect") -> list[str]:
    """The table's headers in the page's language (the metric keeps its name: mAP@0.5, mIoU)."""
    return [text("tcompare.col_stage"), text("tcompare.col_weights"), METRIC[task][1], text("compare.col_params"),
            text("compare.col_flops"), text("compare.col_latency"), text("tcompare.col_found")]


def empty_table() -> dict:
    """Before a comparison: no rows, headers in the page's language (set on load)."""
    return {"headers": headers(), "data": []}


def _stage(task: str, fusion: str, shown: Image.Image) -> tuple[Image.Image, list]:
    from convformer.tasks import detect, segment, task_shape_rows
    loaded = handlers.task_model(task, fusion, "bundled")
    model = loaded.model
    key, _ = METRIC[task]
    metric = (model.meta.get("metrics") or {}).get(key)
    x = preprocess(shown, model)
    with loaded.lock:
        found = detect(model, shown, score_threshold=handlers.DEFAULT_THRESHOLD) if task == "detect" else \
            segment(model, shown)
        flops = sum(r.flops for r in inspect.backbone_inspection(model, x).shapes) + \
            sum(r.flops for r in task_shape_rows(model, x))
        latency = forward_latency(model, x)
    if task == "detect":
        r = DetectResult.of(found, shown, loaded.classes, handlers.DEFAULT_THRESHOLD)
        picture, what = results.boxes_picture(r), text("tcompare.boxes", n=len(r.boxes))
    else:
        r = SegmentResult.of(found, shown, found.class_names)
        picture = results.mask_picture(r)
        what = ", ".join(r.class_names[c] for c in np.unique(r.mask) if c) or text("tcompare.background")
    weights = text("tcompare.bundled") if metric is not None else text("tcompare.untrained")
    params = sum(p.numel() for p in model.parameters())
    return picture, [fusion, weights, round(float(metric), 3) if metric is not None else None,
                     round(params / 1e6, 3), round(flops / 1e6, 1), views.latency_cell(latency), what]
