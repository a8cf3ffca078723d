"""The handlers behind the Gradio app (`app.py` holds only layout and wiring), as plain typed functions.

A request runs ONE inspection pass (`ui_model.run`) and keeps what the pictures need in a `Run`, which the
app stores in gr.State: controls that only change a picture (head fusion, discard ratio, block, head,
stage, clicked patch) re-draw from it without running the model again.
"""
from __future__ import annotations

import logging
import re
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import gradio as gr
import numpy as np
from PIL import Image

from . import ui_views as views
from .checkpoint import CheckpointError, bundled_checkpoint, read_info
from .config import FUSIONS, MERGES, ConvFormerConfig
from .data import ImageError, load_image
from .presets import PRESETS
from .ui_model import (CACHE, EXAMPLES, HEAD_FUSIONS, HPARAMS, PREDICTED, WEIGHTS, Run, _bundled_config, _clean,
                       check_config, controls_of, defaults, guard, on_model_thread, run, set_device)

__all__ = ["CACHE", "EXAMPLES", "HEAD_FUSIONS", "PREDICTED", "PREDICT_OUTPUTS", "PRESETS", "QUERY_KEYS", "WEIGHTS",
           "check_config", "checkpoint_controls", "click", "examples", "from_query", "guard", "link", "notice",
           "on_fusion", "on_load", "on_preset", "on_trained", "on_weights", "pick_example", "predict", "preview",
           "redraw_attention", "redraw_channels", "run", "set_device", "warm_up"]


# ---- what the app calls ---------------------------------------------------------------------------------
PREDICT_OUTPUTS = ("label", "notice", "stats", "maps_note", "rollout", "patch", "query", "blocks", "heads",
                   "channels", "cam", "table", "diagram", "run", "point", "block", "head", "stage", "cam_target")


def predict(image: str | None, fusion: str = "mid", preset: str = "convformer_mid_tiny", img_size: float = 224,
            embed_dim: float = 192, depth: float = 4, num_heads: float = 3, mlp_ratio: float = 4.0,
            patch_size: float = 16, conv_widths: str = "32, 64, 128, 192", conv_depths: str = "1, 1, 2, 2",
            merge: str = "concat", weights: str = "bundled", checkpoint: str | None = None,
            cam_target: str = PREDICTED, top_k: float = 5, head_fusion: str = "mean",
            discard_ratio: float = 0.0, trained: str | None = None) -> tuple:
    """Run the model once on the image; return every output, in the order of PREDICT_OUTPUTS. `trained` is
    the session's Train-tab checkpoint (a gr.State), used when weights == "trained"."""
    r = run(image, fusion, preset, img_size, embed_dim, depth, num_heads, mlp_ratio, patch_size, conv_widths,
            conv_depths, merge, weights, checkpoint, cam_target, trained)
    k = max(1, min(int(top_k), len(r.classes)))
    top = np.argsort(-r.probs, kind="stable")[:k]
    label = {r.classes[i]: float(r.probs[i]) for i in top}
    blocks = list(r.attentions)
    block = blocks[-1] if blocks else None
    heads = len(r.attentions[block]) if block else 0
    patch, query = views.query_pictures(r, block, None, None)
    blocks_tile, heads_tile = views.block_pictures(r, block)
    stages = list(r.channels)
    return (label, r.notice, r.stats, maps_note(r), views.rollout_picture(r, head_fusion, discard_ratio),
            patch, query, blocks_tile, heads_tile, views.channels_picture(r, stages[-1] if stages else None),
            views.cam_picture(r), views.shape_table(r.shapes), views.diagram_html(r.shapes, r.fusion), r, None,
            gr.update(choices=blocks, value=block), gr.update(choices=head_choices(heads), value="mean of heads"),
            gr.update(choices=stages, value=stages[-1] if stages else None),
            gr.update(choices=[PREDICTED, *r.classes], value=cam_target if cam_target in r.classes else PREDICTED))


def warm_up() -> threading.Thread:
    """Start one request's work for the default controls in the background (the mid stage's model loaded
    and cached, its FLOPs counted, torch's kernels and the picture code run once) so the first visitor does
    not wait for it. Started before `launch()`, it overlaps the server's start-up. Failures are only logged."""
    def work() -> None:
        try:
            on_model_thread(predict, str(examples()[0]), **{k: v for k, v in defaults("mid").items()
                                                             if k != "fusion"})
        except Exception:  # noqa: BLE001 - a warm-up must never stop the app; the first request will report it
            logging.getLogger(__name__).exception("warm-up failed")
    thread = threading.Thread(target=work, name="convformer-warm-up", daemon=True)
    thread.start()
    return thread


def head_choices(heads: int) -> list[str]:
    return ["mean of heads", *(f"head {i}" for i in range(heads))]


def maps_note(r: Run) -> str:
    """Which part of the model each map comes from (late fusion has one branch of each kind)."""
    if r.fusion == "late":
        where = "Attention maps come from the **ViT branch**; conv activations and Grad-CAM from the **CNN branch**."
    elif r.fusion == "cnn":
        where = "The CNN baseline has no attention, so only conv activations and Grad-CAM are shown."
    elif r.fusion == "vit":
        where = "The ViT baseline has no convolutions, so there are no conv activations or Grad-CAM."
    else:
        where = f"In {r.fusion} fusion the transformer attends over the conv trunk's feature grid."
    if r.grid:
        where += f" Token grid: {r.grid[0]} x {r.grid[1]}" + (" plus a class token." if r.grid[2] else ".")
    if r.cam_class:
        where += f" Grad-CAM explains **{r.cam_class}** at `{next(iter(r.cam))}`."
    return where


def redraw_attention(r: Run | None, head_fusion: str = "mean", discard_ratio: float = 0.0,
                     block: str | None = None, head: str | None = None, point: list | None = None) -> tuple:
    """Re-draw every attention picture from the last run: (rollout, patch, query, blocks, heads)."""
    if r is None:
        raise gr.Error("Run the model first.")
    try:
        rollout = views.rollout_picture(r, head_fusion, float(discard_ratio))
    except ValueError as e:
        raise gr.Error(str(e)) from None
    patch, query = views.query_pictures(r, block, head, point)
    return (rollout, patch, query, *views.block_pictures(r, block))


def click(r: Run | None, block: str | None, head: str | None, evt: gr.SelectData) -> tuple:
    """A click on the patch picture: (the clicked point, the patch picture, where that patch attends)."""
    if r is None:
        raise gr.Error("Run the model first.")
    point = list(evt.index[:2]) if isinstance(evt.index, (list, tuple)) else None
    return (point, *views.query_pictures(r, block, head, point))


def redraw_channels(r: Run | None, stage: str | None) -> Image.Image | None:
    if r is None:
        raise gr.Error("Run the model first.")
    return views.channels_picture(r, stage)


def preview(image: str | None) -> tuple[Image.Image | None, str]:
    """The decoded upload (or why it cannot be used), before running anything."""
    if not image:
        return None, ""
    try:
        picture = load_image(image)
    except ImageError as e:
        gr.Warning(f"This image cannot be used: {_clean(e)}")
        return None, f"⚠ **This image cannot be used:** {_clean(e)}"
    scale = views.DISPLAY / max(picture.size)  # small images are enlarged so they can be seen
    return picture.resize((max(1, round(picture.width * scale)), max(1, round(picture.height * scale))),
                          Image.Resampling.BICUBIC), ""


def examples() -> list[Path]:
    return sorted(p for p in EXAMPLES.glob("*") if p.suffix.lower() in (".png", ".jpg", ".jpeg", ".webp"))


def pick_example(evt: gr.SelectData) -> str:
    """A click on the examples gallery: that example becomes the image."""
    return str(examples()[int(evt.index)])


def notice(fusion: str, weights: str, checkpoint: str | None = None, trained: str | None = None) -> str:
    """What the weights will be, before running (read from checkpoint headers, nothing is built)."""
    if weights == "trained":
        if not trained or not Path(trained).is_file():
            return "**Nothing trained in this session yet:** train a model in the **Train** tab first."
        try:
            return views.weights_notice("trained", read_info(trained).get("meta", {}), Path(trained).name)
        except CheckpointError as e:
            return f"⚠ **This checkpoint cannot be used:** {_clean(e)}"
    path = bundled_checkpoint(fusion) if weights == "bundled" else Path(checkpoint) if weights == "upload" and \
        checkpoint else None
    if weights == "upload" and path is None:
        return "**Upload a .safetensors checkpoint** to use your own weights."
    if path is None:
        reason = (f"No trained checkpoint is bundled for **{fusion}** fusion yet, so it runs with random "
                  "initialisation." if weights == "bundled" else "You chose random initialisation.")
        return views.weights_notice("random", {}, "", reason)
    try:
        return views.weights_notice(weights, read_info(path).get("meta", {}), path.name)
    except CheckpointError as e:
        return f"⚠ **This checkpoint cannot be used:** {_clean(e)}"


def on_fusion(fusion: str, weights: str, checkpoint: str | None = None, trained: str | None = None) -> tuple:
    """A new fusion stage: (fusion, its tiny preset, *HPARAMS of what will run, weights notice)."""
    d = defaults(fusion, None, weights)
    return (fusion, d["preset"], *(d[k] for k in HPARAMS), notice(fusion, weights, checkpoint, trained))


def on_preset(preset: str, weights: str, checkpoint: str | None = None, trained: str | None = None) -> tuple:
    """A new preset: its fusion stage and hyperparameters, in the order of `on_fusion`."""
    if preset not in PRESETS:
        raise gr.Error(f"preset={preset!r} is not allowed: expected one of {', '.join(PRESETS)}")
    fusion = PRESETS[preset].fusion
    d = defaults(fusion, preset, weights)
    return (fusion, d["preset"], *(d[k] for k in HPARAMS), notice(fusion, weights, checkpoint, trained))


def on_weights(fusion: str, weights: str, checkpoint: str | None = None, trained: str | None = None) -> tuple:
    """A new weights choice: (*HPARAMS, notice, checkpoint upload visibility). The hyperparameters change
    only to show a bundled or this session's trained checkpoint's architecture; otherwise they stay."""
    cfg = _bundled_config(fusion) if weights == "bundled" else _stored_config(trained) if weights == "trained" \
        else None
    values = [controls_of(cfg)[k] for k in HPARAMS] if cfg else [gr.skip()] * len(HPARAMS)
    return (*values, notice(fusion, weights, checkpoint, trained), gr.update(visible=weights == "upload"))


def _stored_config(path: str | None) -> ConvFormerConfig | None:
    try:
        return ConvFormerConfig.from_dict(read_info(path)["config"]) if path else None
    except (CheckpointError, ValueError, TypeError, KeyError):
        return None


def on_trained(trained: str | None) -> tuple:
    """A run in the Train tab finished: make it this session's model in Explore:
    (fusion, weights, *HPARAMS, notice, checkpoint upload visibility)."""
    cfg = _stored_config(trained)
    if cfg is None:
        return (gr.skip(),) * (4 + len(HPARAMS))
    values = controls_of(cfg)
    return (cfg.fusion, "trained", *(values[k] for k in HPARAMS), notice(cfg.fusion, "trained", None, trained),
            gr.update(visible=False))


def checkpoint_controls(checkpoint: str | None) -> tuple:
    """An uploaded checkpoint: (fusion, *HPARAMS) set to the architecture it was saved with, so that it fits
    as it is. Nothing changes for no file or an unreadable one (the weights notice says why)."""
    try:
        stored = ConvFormerConfig.from_dict(read_info(checkpoint)["config"]) if checkpoint else None
    except (CheckpointError, ValueError, TypeError, KeyError):
        stored = None
    if stored is None:
        return (gr.skip(),) * (1 + len(HPARAMS))
    values = controls_of(stored)
    return (stored.fusion, *(values[k] for k in HPARAMS))


# ---- the configuration in the URL ----------------------------------------------------------------------
QUERY_KEYS = ("fusion", "preset", *HPARAMS, "weights")


def link(fusion: str, preset: str, img_size: float, embed_dim: float, depth: float, num_heads: float,
         mlp_ratio: float, patch_size: float, conv_widths: str, conv_depths: str, merge: str,
         weights: str) -> str:
    """The query string (?fusion=mid&depth=6&...) that re-creates the current configuration."""
    values = dict(zip(QUERY_KEYS, (fusion, preset, img_size, embed_dim, depth, num_heads, mlp_ratio, patch_size,
                                   conv_widths, conv_depths, merge, weights)))
    clean = {k: (int(v) if isinstance(v, float) and v.is_integer() else v) for k, v in values.items()}
    clean["conv_widths"] = ",".join(re.split(r"[,\s]+", str(conv_widths).strip()))
    clean["conv_depths"] = ",".join(re.split(r"[,\s]+", str(conv_depths).strip()))
    return "?" + urlencode(clean)


def from_query(params: Mapping[str, str]) -> dict[str, Any]:
    """Control values from a URL query; unknown keys and unusable values are ignored."""
    params = {k: v for k, v in params.items() if isinstance(v, str)}
    fusion = params.get("fusion") if params.get("fusion") in FUSIONS else "mid"
    # an architecture in the URL is what the link is about: without a weights choice it runs with random weights
    weights = params.get("weights") if params.get("weights") in WEIGHTS else \
        "random" if any(k in params for k in HPARAMS) else "bundled"
    values = defaults(fusion, params.get("preset"), weights)
    for key in HPARAMS:
        if key not in params:
            continue
        text = str(params[key])[:100]
        if key == "merge":
            values[key] = text if text in MERGES else values[key]
        elif key in ("conv_widths", "conv_depths"):
            values[key] = text.replace(",", ", ") if re.fullmatch(r"\d+(,\s*\d+)*", text) else values[key]
        elif re.fullmatch(r"\d+(\.\d+)?", text):
            values[key] = float(text) if key == "mlp_ratio" else int(float(text))
    return values


def on_load(request: gr.Request) -> tuple:
    """Apply the configuration in the page's URL: (preset update, fusion, weights, *HPARAMS, notice)."""
    v = from_query(dict(request.query_params) if request is not None else {})
    return (v["preset"], v["fusion"], v["weights"],
            *(v[k] for k in HPARAMS), notice(v["fusion"], v["weights"]))
