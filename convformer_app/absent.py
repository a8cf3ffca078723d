"""Pictures a model cannot have, said in place (issue 27): a pure CNN has no attention to draw, a pure ViT no
convolution to show or explain with Grad-CAM. Rather than an empty frame under its usual title, each such picture's
title says why it is empty; a model that has the map gets the usual title back. Called whenever the session's run
changes (Explore's Run, a task's views, DETR's), from the kept `engine.Run` alone (no model)."""
from __future__ import annotations

import gradio as gr

from .i18n import text

# Explore's pictures, in the order `labels` returns them: (usual title, what it needs)
PICTURES = (("rollout.image", "attention"), ("per_block.patch", "attention"), ("per_block.query", "attention"),
            ("per_block.blocks", "attention"), ("per_block.heads", "attention"), ("channels.image", "conv"),
            ("cam.image", "cam"))


def labels(run) -> tuple:
    """A title per picture of PICTURES: the usual one, or why the map is absent for this model."""
    if run is None:
        return tuple(gr.skip() for _ in PICTURES)
    has = {"attention": bool(run.attentions), "conv": bool(run.channels),
           "cam": bool(run.cam) or bool(getattr(run, "conv_layers", None))}
    return tuple(gr.update(label=text(key) if has[need] else text(f"absent.{need}")) for key, need in PICTURES)
