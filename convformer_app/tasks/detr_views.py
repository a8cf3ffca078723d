"""Explore's views under the Detect panel when the detector is DETR pretrained on COCO (issue 24): refilled from
DETR itself, never left showing the previous model's maps.

DETR (Carion et al. 2020) flattens its ResNet's last map into a token grid and runs a transformer encoder over
it, so Explore's attention views read its encoder's self-attention (each layer a "block", its heads averaged
as convformer.coco_detr records them): rollout, per block, and click-a-patch (where the clicked pixel's token
looked). Conv activations come from the ResNet's stages, the shape table and diagram from the live model.
Grad-CAM for a box and each query's cross-attention live in the Detect panel above and the Photos accordion;
the Grad-CAM tab says so in one line instead of showing an old map. One call = one DETR forward pass.
"""
from __future__ import annotations

import time

import gradio as gr
import numpy as np
from PIL import Image

from convformer.inspection import viz

from .. import coco, engine as session, views
from ..i18n import text
from . import inspect


def detr_run(photo: Image.Image) -> tuple[session.Run, list]:
    """(the Run Explore's views read, made from one DETR inspection of `photo`; DETR's shape rows)."""
    from convformer import coco_detr
    loaded = coco.load()
    det = loaded.model
    with loaded.lock:  # inspect hooks the model: one at a time
        start = time.perf_counter()
        r = coco_detr.inspect(det, photo, coco.THRESHOLD)
        ms = (time.perf_counter() - start) * 1e3
    gh, gw = r.grid
    encoder = r.encoder.numpy().astype(np.float16)                       # (L, N, N), heads averaged
    params = sum(p.numel() for p in det.model.parameters())
    stats = text("tview.detr_stats", params=views.human(params), h=r.input_hw[0], w=r.input_hw[1], gh=gh, gw=gw,
                 ms=f"{ms:.0f}", device=session.device_name())
    run = session.Run(
        display=views.display_image(photo, r.input_hw), fusion="detr", classes=list(loaded.classes),
        probs=np.zeros(len(loaded.classes), np.float32),
        attentions={f"encoder.{i}": encoder[i][None] for i in range(len(encoder))},  # (1 head, N, N)
        grid=(gh, gw, 0), channels=viz.top_activations({k: v[None] for k, v in r.activations.items()}),
        cam={}, cam_class=None, shapes=[], stats=stats, notes=[text("tview.detr_maps", gh=gh, gw=gw)])
    return run, r.rows


def explain(image: str | None) -> dict:
    """Explore's views (by the names of tasks.handlers.EXPLAIN_OUTPUTS) for DETR on the image."""
    from ..explore import handlers as explore
    run, rows = detr_run(session.picture(image))
    block = list(run.attentions)[-1]
    patch, query = views.query_pictures(run, block, None, None)
    blocks, heads = views.block_pictures(run, block)
    stages = list(run.channels)
    return dict(stats=run.stats, maps_note=explore.maps_note(run), rollout=views.rollout_picture(run), patch=patch,
                query=query, blocks=blocks, heads=heads, channels=views.channels_picture(run, stages[-1]), cam=None,
                table=shape_table(rows), diagram=coco.diagram_html(rows), run=run, point=None,
                block=gr.update(choices=list(run.attentions), value=block),
                head=gr.update(choices=explore.head_choices(1), value="mean of heads"),
                stage=gr.update(choices=stages, value=stages[-1]),
                task_cam_target=gr.update(choices=[(text("cam.predicted"), inspect.PREDICTED)],
                                          value=inspect.PREDICTED),
                task_cam_layer=gr.update(choices=[], value=None), cam_note=text("tview.detr_cam"),
                relevance=None, relevance_note=text("tview.relevance_task"))


def shape_table(rows: list) -> dict:
    """coco.shape_table with its headers in the page's language."""
    table = coco.shape_table(rows)
    keys = ("table.step", "table.input", "table.output", "table.params", "table.what")
    return dict(table, headers=[text(k) for k in keys])
