"""The weights choice "Pretrained on ImageNet" (`imagenet`): every fusion stage's published timm reference
(convformer.references) in the app, through the same inspection and the same `Run` as our own models.

Weights are fetched into the Hugging Face cache on the request's own thread, so the page's progress bar
follows the download (gr.Progress(track_tqdm=True) reads huggingface_hub's tqdm bar; the start of each
download is also said in words); everything after that reads the cache. An unreachable Hub with nothing
cached is one line on the page within seconds, and every other weights choice keeps working.
"""
from __future__ import annotations

from collections.abc import Callable

import gradio as gr
import numpy as np
import pandas as pd

from convformer.inspection import viz
from convformer.inspection import conv_layers
from convformer.timing import Latency
from convformer.references import (REFERENCES, WeightsUnavailable, fetch, imagenet_labels, is_cached, load_reference,
                                   params, preprocess, view)

from . import engine, views
from .i18n import text, translate
from .engine import PREDICTED, Loaded, Run
from .weights import Weights

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


def weights(fusion: str) -> Weights:
    """The resolved `imagenet` weights of a stage: what the notice says before anything runs."""
    ref = REFERENCES.get(fusion)
    if ref is None:
        problem = f"fusion={fusion!r} is not allowed here: expected one of {tuple(REFERENCES)}"
        return Weights(KIND, translate(problem), problem=problem)
    score = text("refs.top1", top1=f"{ref.top1:.1f}") if ref.top1 else text("refs.averaged")
    size = f"{params(fusion) * 4 / 1e6:.0f}"  # float32 weights, MB
    where = text("refs.cached") if is_cached(fusion) else text("refs.download_once", mb=size)
    notice = text("refs.notice", model=ref.label, title=text(f"refs.title.{fusion}"), score=score, where=where)
    return Weights(KIND, notice, meta={"fusion": fusion, "dataset": "imagenet", "reference": ref.label})


def download(fusion: str, progress: Callable | None = None) -> None:
    """Make sure the stage's weights are cached (the request's thread, for the progress bar); gr.Error when
    they cannot be had."""
    def said(name: str, size: int | None) -> None:
        if progress is not None:
            mb = text("refs.size", mb=f"{size / 1e6:.0f}") if size else ""
            progress(0, desc=text("refs.downloading", name=name, size=mb))
    try:
        fetch(fusion, on_download=said)
    except WeightsUnavailable as e:
        raise gr.Error(views.clean(e)) from None


def load(fusion: str) -> Loaded:
    """The stage's reference on the app's device, built once (engine.CACHE); weights from the cache."""
    def build() -> Loaded:
        try:
            model = load_reference(fusion).to(engine.DEVICE)
        except WeightsUnavailable as e:
            raise gr.Error(views.clean(e)) from None
        return Loaded(model, list(imagenet_labels()))
    return engine.CACHE.get((KIND, fusion, str(engine.DEVICE)), build)


def run(image: str | None, fusion: str, cam_target: str = PREDICTED, cam_layer: str | None = None) -> Run:
    """One inspection of the stage's reference on the image, kept as a `Run` (as engine.run does); Grad-CAM
    explains `cam_layer` when it is one of the model's conv layers, else the last one."""
    return measured(image, fusion, cam_target, cam_layer)[0]


def measured(image: str | None, fusion: str, cam_target: str = PREDICTED,
             cam_layer: str | None = None) -> tuple[Run, Latency]:
    """`run`, and the latency of a plain forward pass on this device."""
    shown = engine.picture(image)
    loaded = load(fusion)
    model = loaded.model
    explained = engine.explained_class(loaded.classes, cam_target)
    cam = None if fusion == "vit" else explained  # DeiT has no conv layer to explain
    x = preprocess(shown, model).to(engine.DEVICE)
    with loaded.lock:
        layers = conv_layers(model)
        result, latency = engine._compute(model, x, cam, [cam_layer] if cam_layer in layers else None, explained)
    grids = {b: (g.h, g.w, g.prefix) for b in result.attentions if (g := result.grid_of(b)) is not None}
    rollout = result.rollout_blocks()
    acts = viz.top_activations(result.activations)
    size = tuple(x.shape[-2:])
    return Run(display=views.display_image(view(shown, model), size), fusion=fusion, classes=loaded.classes,
               probs=result.probs[0].float().cpu().numpy(),
               attentions={k: viz.to_numpy(v[0]).astype(np.float16) for k, v in result.attentions.items()},
               grid=grids[rollout[-1]] if rollout else None, channels=acts,
               cam={k: viz.to_numpy(v[0]) for k, v in result.cam.items()},
               cam_class=loaded.classes[int(result.cam_class[0])] if result.cam_class is not None else None,
               shapes=result.shapes, **engine.relevance_fields(result, loaded.classes),
               stats=views.stats_markdown(result.params, result.flops, latency, engine.device_name(), size),
               conv_layers=list(result.activations) if cam is not None else [],
               grids=grids, rollout=rollout, notes=[REFERENCES[fusion].attention, *result.notes]), latency


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
        try:
            download(fusion, progress)
        except gr.Error:  # not cached, no Hub: one plain line beside the (empty) table, no red badges (issue 27)
            return pd.DataFrame(columns=headers()), [], text("refs.unavailable")
        r, latency = engine.on_model_thread(measured, image, fusion)
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
