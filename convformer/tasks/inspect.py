"""One recorded forward of a task model: the backbone's inspection (`convformer.inspection.inspect`: attention
per block and head, conv activations, token grids, shape rows) and, from the same pass, the head's outputs.

The neck reads the backbone's taps; here they are kept by forward hooks on the tap modules while `inspect`
runs the backbone once (a conv map as it is; a transformer block's tokens through the branch's final norm,
prefix tokens dropped, back on the grid: what `forward_intermediates(norm=True)` returns), so inspecting a
task model costs one backbone forward, not two. The hooks are always removed.
"""
from __future__ import annotations

import torch

from ..inspection import Inspection, inspect
from .model import TaskModel


def _tap_names(model: TaskModel) -> list[str]:
    return [model.backbone.feature_info[i]["module"] for i, _, _ in model.taps]


def _as_map(model: TaskModel, name: str, out: torch.Tensor, grids: dict[str, tuple[int, int]]) -> torch.Tensor:
    """A hooked tap -> (B, C, h, w): tokens (B, P + h * w, D) through their branch's norm onto the grid."""
    if out.dim() != 3:
        return out
    branch = name.split(".")[1]
    h, w = grids[branch]
    out = model.backbone.get_submodule(f"branches.{branch}.norm")(out)[:, -h * w:]
    return out.transpose(1, 2).reshape(out.shape[0], -1, h, w)


def inspect_task(model: TaskModel, x: torch.Tensor, *, cam_class: int | str | None = None,
                 flops: bool = True) -> tuple[Inspection, dict[str, torch.Tensor]]:
    """(B, 3, H, W) -> (the backbone's Inspection, the head's outputs as `model(x)` gives them), from one
    backbone forward. `cam_class` and `flops` as in `inspect` (Grad-CAM there explains the backbone's own
    classifier logit; a task target is the app's `task_cam`)."""
    names = _tap_names(model)
    found: dict[str, torch.Tensor] = {}
    grids: dict[str, tuple[int, int]] = {}
    branches = sorted({n.split(".")[1] for n in names if ".blocks." in n})
    hooks = [model.backbone.get_submodule(n).register_forward_hook(
        lambda m, args, out, n=n: found.__setitem__(n, out.detach())) for n in names]
    hooks += [model.backbone.get_submodule(f"branches.{b}.tokens").register_forward_pre_hook(
        lambda m, args, b=b: grids.__setitem__(b, tuple(args[0].shape[-2:]))) for b in branches]
    try:
        result = inspect(model.backbone, x, cam_class=cam_class, flops=flops)
    finally:
        for hook in hooks:
            hook.remove()
    was_training = model.training
    if was_training:
        model.eval()
    with torch.inference_mode():
        fused = model.neck([_as_map(model, n, found[n], grids) for n in names])
        out = model.head(fused, x) if model.task == "segment" else model.head(fused)
    if was_training:
        model.train()
    return result, out
