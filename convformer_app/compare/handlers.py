"""The Compare tab: early, mid and late fusion and the CNN / ViT baselines side by side.

Every stage runs with its bundled checkpoint when there is one; otherwise with random weights (its tiny
preset at the bundled checkpoints' image size), and the page says so: both read `weights.resolve`, as
Explore does. Two comparisons:
  * one image: top predictions, the attention rollout (Grad-CAM for the CNN) and the strongest channels of
    the last conv stage, through the same inspection pass as Explore (`engine.run`);
  * a fresh test split of the built-in shapes (seed TEST_SEED, never used in training): accuracy,
    parameters, FLOPs and latency on this device. Scores are computed once per process and model and cached.
"""
from __future__ import annotations

import threading
from collections import OrderedDict

import gradio as gr
import pandas as pd

from convformer.config import FUSIONS
from convformer.data.datasets import ImageTensors, materialize
from convformer.inspection import inspect
from convformer.presets import PRESETS, preset_name
from convformer.data.shapes import CLASSES, ShapesDataset
from convformer.timing import forward_latency
from convformer.train import evaluate

from .. import engine, views
from ..i18n import text
from ..controls import Controls
from ..weights import Weights, resolve

SIZE = 64                  # image size of the bundled checkpoints; random stand-ins use it too
TEST_SEED = 4242           # the bundled checkpoints were trained with seed 0 and tested with seed 1000
# the labels of each stage's two pictures (keys of convformer_app/i18n.py)
OVERLAY = {f: "compare.cam" if f == "cnn" else "compare.rollout" for f in FUSIONS}
CHANNELS = {f: "compare.no_conv" if f == "vit" else "compare.channels" for f in FUSIONS}
HEADERS = ["model", "weights", "accuracy (%)", "params (M)", "MFLOPs", "latency (ms)"]  # the API's column names
HEADER_KEYS = ("compare.col_model", "compare.col_weights", "compare.col_acc", "compare.col_params",
               "compare.col_flops", "compare.col_latency")
TOP = 3

_ROWS: OrderedDict[tuple, list] = OrderedDict()   # keyed by a request value (n): bounded, oldest out
_DATA: OrderedDict[tuple, ImageTensors] = OrderedDict()
MAX_ROWS, MAX_SPLITS = 64, 2
_LOCK = threading.Lock()


def controls(fusion: str) -> Controls:
    """A stage's bundled checkpoint; without one, the stand-in: its tiny preset at SIZE px, random weights."""
    return Controls.of(PRESETS[preset_name(fusion)].replace(img_size=SIZE), weights="bundled")


def weights_label(weights: Weights) -> str:
    return weights_label_of(weights.kind)


def compare_image(image: str | None) -> tuple:
    """Every stage on one image: per stage (title, top predictions, overlay, strongest channels)."""
    if not image:
        raise gr.Error("Upload an image first (or pick an example in Explore and come back).")
    out: list = []
    for fusion in FUSIONS:
        weights = resolve(controls(fusion))
        r = engine.run(image, controls(fusion), weights)
        top = sorted(range(len(r.probs)), key=lambda i: -r.probs[i])[:TOP]
        title = f"### {fusion}\n" + (text("compare.bundled") if weights.kind == "bundled" else
                                     text("compare.random_title"))
        overlay = views.cam_picture(r) if fusion == "cnn" else views.rollout_picture(r)
        stages = list(r.channels)
        channels = views.channels_picture(r, stages[-1]) if stages else None
        out += [title, {views.class_name(r.classes[i]): float(r.probs[i]) for i in top}, overlay, channels]
    return tuple(out)


def _test_split(size: tuple[int, int], n: int) -> ImageTensors:
    key = (size, n)
    if key not in _DATA:
        _DATA[key] = materialize(ShapesDataset("test", n, size, TEST_SEED), size, classes=list(CLASSES))
        while len(_DATA) > MAX_SPLITS:
            _DATA.popitem(last=False)
    return _DATA[key]


def _row(fusion: str, n: int) -> list:
    weights = resolve(controls(fusion))
    key = (fusion, n, weights.stamp, str(engine.DEVICE))
    if key in _ROWS:  # checked first: the model cache may have dropped this model since
        return _ROWS[key]
    loaded = engine.load(weights, engine.model_config(controls(fusion), weights))  # random: 10 classes
    model = loaded.model
    data = _test_split(model.config.img_size, n)
    x = data.images[:1].to(engine.DEVICE).float() / 255
    with loaded.lock:  # Explore's inspection hooks this model too: one at a time
        acc = evaluate(model, data, batch_size=100)["acc"] if model.config.num_classes == len(CLASSES) else None
        counted = inspect(model, x)  # FLOPs with attention's matmuls (FlopCounterMode misses SDPA on CPU)
        latency = forward_latency(model, x)
    row = [fusion, weights_label(weights), round(100 * acc, 1) if acc is not None else None,
           round(counted.params / 1e6, 3), round(counted.flops / 1e6, 1), views.latency_cell(latency)]
    _ROWS[key] = row
    while len(_ROWS) > MAX_ROWS:
        _ROWS.popitem(last=False)
    return row


def compare_split(n: float = 500, progress: gr.Progress = gr.Progress()) -> tuple:
    """Score every stage on a fresh shapes test split of `n` images: (table, chart data, summary)."""
    try:
        n = int(float(n))
    except (TypeError, ValueError, OverflowError):
        n = -1
    if not 10 <= n <= 2000:
        raise gr.Error(f"test images={n} is not allowed: expected a whole number from 10 to 2000")
    rows = []
    with _LOCK:  # one evaluation at a time; a second press waits and then reads the cache
        for i, fusion in enumerate(FUSIONS):
            progress((i, len(FUSIONS)), desc=text("compare.scoring", fusion=fusion, n=n), unit="models")
            rows.append(engine.on_model_thread(_row, fusion, n))  # progress stays in this handler's thread
    table = pd.DataFrame(rows, columns=HEADERS)
    shown = pd.DataFrame([[row[0], text("compare.bundled" if row[1] == weights_label_of("bundled") else
                                        "compare.random_row"), *row[2:]] for row in rows],
                         columns=[text(k) for k in HEADER_KEYS])  # the page's language; the chart reads HEADERS
    note = text("compare.note", n=n, seed=TEST_SEED, px=SIZE, device=engine.device_name())
    note += text("compare.busy") if any(str(row[-1]).endswith("⚠") for row in rows) else ""
    return shown, chart(table), note


def weights_label_of(kind: str) -> str:
    return "bundled checkpoint" if kind == "bundled" else "RANDOM (nothing bundled)"


def headers() -> tuple:
    """Before anything is scored: (the empty table, the chart's axis titles), in the page's language."""
    return ({"headers": [text(k) for k in HEADER_KEYS], "data": []},
            gr.update(x_title=text("compare.col_model"), y_title=text("compare.col_acc")))


def chart(table: pd.DataFrame) -> dict:
    """The accuracy bars, best first, on an axis that starts just below the worst score, so that differences
    of a few points (93% vs 98%) can be seen; the axis' start is in its title."""
    ranked = table.sort_values("accuracy (%)", ascending=False, na_position="last")
    scores = ranked["accuracy (%)"].dropna()
    low = max(0, int(scores.min()) - 2) if len(scores) else 0
    return gr.update(value=ranked, sort=list(ranked["model"]), y_lim=[low, 100], x_title=text("compare.col_model"),
                     y_title=text("compare.axis_from", low=low) if low else text("compare.col_acc"))


def example_image() -> str:
    """A shapes example (what the bundled models know), so the tab shows something before any upload."""
    from ..explore.handlers import examples
    found = sorted(examples(), key=lambda p: not p.name.startswith("shapes_"))
    return str(found[0]) if found else ""

