"""Explore's existing views on a task model: one inspection of its backbone (attention per block and head,
rollout, click-a-patch, conv activations: `convformer.inspection.inspect` on `model.backbone`), the shape table
continued past the backbone (the library's `task_shape_rows`), and Grad-CAM for a chosen box or class.

Grad-CAM (Selvaraju et al. 2017) needs one number to explain. A classifier's is the class logit; here:
- dense detection head: the class's heatmap logit at its strongest cell (a box: at the cell of its centre);
- set head: the class's logit in the query that scores it highest (a box: its own query);
- segmentation: the class's logit averaged over the pixels predicted as that class (all pixels if none).
The activation is hooked for one forward and backward; the hook is released in a `with` block.
"""
from __future__ import annotations

from contextlib import contextmanager

import numpy as np
import torch

from convformer.inspection import viz
from convformer.inspection import conv_layers, grad_cam, inspect
from convformer.inspection.convformer_engine import steps
from convformer.timing import forward_latency

PREDICTED = "predicted class"
BOX = "box "  # a Grad-CAM target naming a detection: "box 0", "box 1", ...


@contextmanager
def captured(module: torch.nn.Module):
    """Keep `module`'s output of the next forward in the yielded dict (key "out"); the hook always goes."""
    kept: dict[str, torch.Tensor] = {}
    hook = module.register_forward_hook(lambda m, a, out: kept.__setitem__("out", out))
    try:
        yield kept
    finally:
        hook.remove()


def target_score(model, out: dict[str, torch.Tensor], target: str, boxes_hw: np.ndarray | None = None
                 ) -> tuple[torch.Tensor, str]:
    """(the scalar to explain, the class it belongs to) for a Grad-CAM target: PREDICTED, a class name or
    "box i" (`boxes_hw`: detection i's centre (cy, cx) as fractions of the image, and its class)."""
    names = list(model.class_names)
    if model.task == "segment":
        logits = out["logits"][0]                                        # (K+1, H, W)
        pred = logits.argmax(0)
        k = names.index(target) + 1 if target in names else int(
            torch.bincount(pred.flatten(), minlength=len(logits))[1:].argmax()) + 1
        where = pred == k
        score = logits[k][where].mean() if where.any() else logits[k].mean()
        return score, names[k - 1]
    if model.head_kind == "set":
        logits = out["pred_logits"][0, :, :-1]                           # (Q, K)
        if target.startswith(BOX) and boxes_hw is not None:
            q = int(boxes_hw[int(target[len(BOX):])][3])
            k = int(logits[q].argmax())
        else:
            k = names.index(target) if target in names else int(logits.softmax(-1).max(0).values.argmax())
            q = int(logits[:, k].argmax())
        return logits[q, k], names[k]
    heat = out["heatmap"][0]                                             # (K, h, w)
    if target.startswith(BOX) and boxes_hw is not None:
        cy, cx, k, _ = boxes_hw[int(target[len(BOX):])]
        k = int(k)
        y, x = min(int(cy * heat.shape[1]), heat.shape[1] - 1), min(int(cx * heat.shape[2]), heat.shape[2] - 1)
        return heat[k, y, x], names[k]
    k = names.index(target) if target in names else int(heat.flatten(1).amax(1).argmax())
    return heat[k].max(), names[k]


def task_cam(model, x: torch.Tensor, layer: str, target: str, boxes_hw: np.ndarray | None = None
             ) -> tuple[np.ndarray, str]:
    """Grad-CAM (h, w) in [0, 1] of the backbone's conv activation `layer` for `target`, and its class."""
    module = dict((name, m) for name, m, _ in steps(model.backbone))[layer]
    model.eval()
    with captured(module) as kept, torch.enable_grad():
        out = model(x)
        score, name = target_score(model, out, target, boxes_hw)
        act = kept.get("out")
        if act is None:  # the task head reads earlier taps: this layer is not run
            raise ValueError(f"layer {layer} is not used by the {model.task} head: choose an earlier one")
        grad, = torch.autograd.grad(score, act)
    return viz.to_numpy(grad_cam(act.detach(), grad)[0]), name


def backbone_inspection(model, x: torch.Tensor):
    """The backbone's own inspection (no Grad-CAM): attention maps, activations, token grids and shape rows;
    the backbone's pool, merge and (empty) classifier rows are dropped: the task head reads its taps instead."""
    result = inspect(model.backbone, x, cam_class=None)
    result.shapes = [r for r in result.shapes if r.name not in ("merge", "head") and not r.name.endswith(".pool")]
    return result


def cam_layers(model) -> list[str]:
    return conv_layers(model.backbone)


# ---- one Run for Explore's views ------------------------------------------------------------------------
def task_run(loaded, shown, cam_target: str = PREDICTED, cam_layer: str | None = None,
             boxes_hw: np.ndarray | None = None, resize: str = "keep"):
    """The `session.Run` Explore's views read, for a task model: the backbone's attention and activations,
    Grad-CAM for `cam_target` (PREDICTED, a class name or "box i"), the shape table through the head and its
    decoding, and the stats line (params and FLOPs of the whole model, latency of its plain forward)."""
    from convformer.data import fit, preprocess
    from convformer.tasks import task_shape_rows

    from .. import engine as session, i18n, views
    model = loaded.model
    x = preprocess(shown, model, resize)
    layers = cam_layers(model)
    layer = cam_layer if cam_layer in layers else (layers[-1] if layers else None)
    with loaded.lock:
        result = backbone_inspection(model, x)
        rows = task_shape_rows(model, x)
        cam, cam_class = task_cam(model, x, layer, cam_target, boxes_hw) if layer else (None, None)
        latency = forward_latency(model, x, session.LATENCY_RUNS, session.LATENCY_BUDGET_S)
    branch, tg = next(iter(result.token_grid.items()), (None, None))
    acts = viz.top_activations(result.activations)
    size = tuple(x.shape[-2:])
    params = sum(p.numel() for p in model.parameters())
    flops = sum(r.flops for r in result.shapes) + sum(r.flops for r in rows)
    return session.Run(
        display=views.display_image(shown, size), fusion=model.config.fusion, classes=list(model.class_names),
        probs=np.zeros(len(model.class_names), np.float32),
        attentions={k: viz.to_numpy(v[0]).astype(np.float16) for k, v in result.attentions.items()},
        grid=(tg.h, tg.w, tg.prefix) if tg else None, channels=acts,
        cam={layer: cam} if cam is not None else {}, cam_class=cam_class, conv_layers=layers,
        shapes=[*result.shapes, *rows],
        stats=views.stats_markdown(params, flops, latency, session.device_name(), size)
        + i18n.text("stats.input", detail=i18n.translate(fit(shown.size, model, resize).message())))

