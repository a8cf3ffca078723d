"""Explore's "Which map to trust?" panel: every map method of the model scored on the image in view
(convformer.inspection.faithfulness), as a small chart, a table and one plain sentence of verdict.

* Deletion and insertion curves with their AUC, for every method, on this image and its predicted class.
* The pointing game and mask IoU only when the image is a Shapes render whose object mask is known: one of the
  bundled examples (Shapes test split, the indices in assets/README.md), recognised by comparing its pixels
  with a fresh render, never by its name.
* The sanity check (cascading randomisation) on demand: it runs the model once per layer group.
* Late fusion: which branch the prediction rests on (each branch's share of the logit, and the deletion AUC of
  the map that explains it).
The model work runs on the model thread (engine.guard) under the model's lock; the views are pure.
"""
from __future__ import annotations

import functools
import html
from dataclasses import dataclass

import gradio as gr
import numpy as np
import pandas as pd
import torch
from PIL import Image

from convformer.inspection import faithfulness as fa
from convformer.data import RESIZES, preprocess
from convformer.data.shapes import render_with_mask

from . import engine
from .controls import Controls, spread
from .i18n import text
from .weights import resolve

# the Shapes examples in assets/examples (assets/README.md), test split, as (index, seed)
EXAMPLE_IDS = ((0, 0), (3, 0), (6, 0), (12, 0), (19, 0), (27, 0), (1, 4242), (4, 4242), (5, 4242), (48, 4242))
STEPS = 16                           # deletion / insertion steps on one image
VERDICT_MARGIN = 0.05                # how much a method must beat the random map by to be trusted
COLOURS = {"relevance": "#d62728", "rollout": "#1f77b4", "attention": "#2ca02c", "gradcam": "#ff7f0e",
           "random": "#7f7f7f"}


# ---- is it a Shapes render? ------------------------------------------------------------------------------
@functools.lru_cache(maxsize=8)
def _renders(h: int, w: int) -> tuple[tuple[bytes, np.ndarray], ...]:
    out = []
    for index, seed in EXAMPLE_IDS:
        image, _, mask = render_with_mask(index, "test", (h, w), seed=seed)
        out.append((np.asarray(image).tobytes(), mask))
    return tuple(out)


def shapes_mask(image: Image.Image) -> np.ndarray | None:
    """The object mask (H, W) in [0, 1] when `image` is, pixel for pixel, one of the bundled Shapes examples;
    else None."""
    w, h = image.size
    if image.mode != "RGB" or not 32 <= min(w, h) <= 512:
        return None
    pixels = np.asarray(image).tobytes()
    return next((mask for rendered, mask in _renders(h, w) if rendered == pixels), None)


def _mask_for(mask: np.ndarray, hw: tuple[int, int]) -> torch.Tensor:
    """The mask resized (bilinear) to the model's input (H, W), as the image was: (1, H, W)."""
    small = Image.fromarray(mask.astype(np.float32), mode="F").resize((hw[1], hw[0]), Image.Resampling.BILINEAR)
    return torch.from_numpy(np.asarray(small).copy())[None]


# ---- the scores ----------------------------------------------------------------------------------------
@dataclass
class Trust:
    """The panel's numbers for one image."""
    cls: str                           # the explained (predicted) class
    curves: dict[str, fa.Curves]       # method -> its curves (one image)
    pointing: dict[str, bool]          # method -> hit; empty when no object mask is known
    iou: dict[str, float]
    branches: dict[str, dict[str, float]]  # late fusion: branch -> share, logit, deletion


def _inputs(image: str | None, controls: Controls, trained: str | None, resize: str):
    if resize not in RESIZES:
        raise gr.Error(f"resize={resize!r} is not allowed: expected one of {', '.join(RESIZES)}")
    weights = resolve(controls, trained)
    if not weights.runs_convformer:
        raise gr.Error(text("trust.imagenet"))
    shown = engine.picture(image)
    loaded = engine.load(weights, engine.model_config(controls, weights))
    return shown, loaded, preprocess(shown, loaded.model, resize)


def measure(image: str | None, controls: Controls, trained: str | None = None, resize: str = "keep") -> Trust:
    """Every method's deletion / insertion curves on the image (and pointing game / IoU on a Shapes example)."""
    shown, loaded, x = _inputs(image, controls, trained, resize)
    with loaded.lock:
        maps, result = fa.method_maps(loaded.model, x)
        target = result.relevance_class if result.relevance_class is not None else result.cam_class
        curves = fa.perturbation_curves(loaded.model, x, maps, target, steps=STEPS)
        branches = fa.branch_report(loaded.model, x, target, {m: fa.Score(np.nan, np.nan, float(
            c.deletion_auc[0]), float(c.insertion_auc[0]), np.nan) for m, c in curves.items()}) \
            if getattr(loaded.model, "merge", None) is not None else {}
    mask = shapes_mask(shown)
    pointing, iou = {}, {}
    if mask is not None:
        m = _mask_for(mask, tuple(x.shape[-2:]))
        pointing = {k: bool(fa.pointing_game(v, m)[0]) for k, v in maps.items()}
        iou = {k: float(fa.mask_iou(v, m)[0]) for k, v in maps.items()}
    return Trust(loaded.classes[int(target[0])], curves, pointing, iou, branches)


# ---- what the panel shows ------------------------------------------------------------------------------
def curves_frame(t: Trust, kind: str) -> pd.DataFrame:
    """One curve kind ("deletion" / "insertion") of every method as rows (share of pixels, probability, method)."""
    rows = [(float(f), float(p), m) for m, c in t.curves.items() for f, p in zip(c.fractions, getattr(c, kind)[0])]
    return pd.DataFrame(rows, columns=["fraction", "probability", "method"])


def chart(t: Trust, kind: str) -> dict:
    """A LinePlot update: the curves, axis titles in the page's language (Gradio 6.31 keeps a plot's colour
    domain until a prop changes: the invisible suffix changes with the number of methods)."""
    return gr.update(value=curves_frame(t, kind), x_title=text("trust.chart_x") + "\u200b" * len(t.curves),
                     y_title=text("trust.chart_y", cls=t.cls), label=text(f"trust.chart_{kind}"), color_map=COLOURS)


TABLE_KEYS = ("trust.col_method", "trust.col_deletion", "trust.col_insertion", "trust.col_pointing",
              "trust.col_iou")


def table(t: Trust) -> dict:
    """Per method: deletion AUC, insertion AUC, and on a Shapes example the pointing game and mask IoU."""
    rows = [[m, f"{c.deletion_auc[0]:.3f}", f"{c.insertion_auc[0]:.3f}",
             (text("trust.hit") if t.pointing[m] else text("trust.miss")) if m in t.pointing else "–",
             f"{t.iou[m]:.2f}" if m in t.iou else "–"] for m, c in t.curves.items()]
    return {"headers": [text(k) for k in TABLE_KEYS], "data": rows}


def verdict(t: Trust) -> str:
    """One plain sentence: the method whose top pixels matter most to the prediction (insertion AUC minus
    deletion AUC), measured against a random map."""
    gain = {m: float(c.insertion_auc[0] - c.deletion_auc[0]) for m, c in t.curves.items()}
    floor = gain.pop("random", 0.0)
    if not gain:
        return text("trust.none")
    best = max(gain, key=gain.get)
    cls = html.escape(t.cls)
    if gain[best] <= floor + VERDICT_MARGIN:
        return text("trust.verdict_none", cls=cls, floor=f"{floor:+.2f}")
    where = (text("trust.on_object") if t.pointing[best] else text("trust.off_object")) if best in t.pointing else ""
    return text("trust.verdict", best=best, cls=cls, gain=f"{gain[best]:+.2f}", floor=f"{floor:+.2f}", where=where)


def branches_text(t: Trust) -> str:
    """Late fusion: each branch's share of the logit and the deletion AUC of its map; empty otherwise."""
    if not t.branches:
        return ""
    parts = [text("trust.branch", branch=b, share=f"{v['share']:.0%}", method=fa.BRANCH_MAPS.get(b, "?"),
                  deletion=f"{v['deletion']:.3f}") for b, v in t.branches.items()]
    return text("trust.branches", parts=text("list.sep").join(parts))


@spread
def score(image: str | None, controls: Controls, trained: str | None = None,
          resize: str = "keep") -> tuple[dict, dict, dict, str, str]:
    """The panel for the image: (deletion plot, insertion plot, table, verdict, late fusion's branches)."""
    t = measure(image, controls, trained, resize)
    return chart(t, "deletion"), chart(t, "insertion"), table(t), verdict(t), branches_text(t)


SANITY_KEYS = ("trust.col_method", "trust.col_spearman", "trust.col_sanity")
SANITY_PASS = 0.5  # mean Spearman below this: the map changes with the weights


@spread
def sanity(image: str | None, controls: Controls, trained: str | None = None, resize: str = "keep") -> dict:
    """The sanity check on the image: per method, the mean Spearman correlation of its map with the original
    while the weights are re-drawn from the head down (a copy of the model), and whether it passes."""
    _, loaded, x = _inputs(image, controls, trained, resize)
    with loaded.lock:
        maps, result = fa.method_maps(loaded.model, x)
        target = result.relevance_class if result.relevance_class is not None else result.cam_class
        rho = fa.sanity_check(loaded.model, x, target, tuple(maps))
    rows = [[m, f"{float(v.mean()):.2f}", text("trust.changes") if v.mean() < SANITY_PASS else text("trust.same")]
            for m, v in rho.items()]
    return {"headers": [text(k) for k in SANITY_KEYS], "data": rows}
