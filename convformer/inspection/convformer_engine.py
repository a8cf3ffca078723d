"""The inspection engine of our own models (`ConvFormer`): the steps of the shape table read from the model's
branches, attention read from each `Attention`'s named softmax (its explicit path while inspecting), conv
activations from `ConvStage` / `ResidualBlock`, token grids from `ToTokens`."""
from __future__ import annotations

import weakref
from contextlib import ExitStack

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from ..layers import Attention, ConvStage, ConvStages, ResidualBlock, ToTokens
from ..model import ConvFormer
from .core import Inspection, ShapeRow, TokenGrid, grad_cam, record_steps

NOTES = {"conv": "conv stage, stride 2", "proj": "1x1 conv to embed_dim", "patch": "patchify (conv k=s=patch)",
         "tokens": "grid -> tokens (+cls, +pos)", "blocks": "transformer block (attn + MLP)",
         "norm": "LayerNorm", "grid": "tokens -> grid", "refine": "3x3 residual conv on the token map",
         "pool": "pool to a vector", "merge": "branch merge", "head": "classifier"}

def steps(model: ConvFormer) -> list[tuple[str, nn.Module, str]]:
    """The rows of the shape table: (name, module, note), conv stages and blocks listed one by one."""
    rows = []
    for branch_name, branch in model.branches.items():
        for kind, part in branch.named_children():
            subs = part.named_children() if isinstance(part, (ConvStages, nn.Sequential)) else [("", part)]
            note = NOTES[kind] if kind != "tokens" or part.prefix else "grid -> tokens (+pos)"
            for sub, module in subs:
                rows.append((".".join(filter(None, (branch_name, kind, sub))), module, note))
    if model.merge is not None:
        rows.append(("merge", model.merge, f"{NOTES['merge']} ({model.merge.mode})"))
    rows.append(("head", model.head, NOTES["head"]))
    return rows


_FLOPS: "weakref.WeakKeyDictionary[nn.Module, dict]" = weakref.WeakKeyDictionary()


def inspect_convformer(model: ConvFormer, images: torch.Tensor, cam_class: int | torch.Tensor | str | None = None,
            flops: bool = True, cam_layers: list[str] | None = None) -> Inspection:
    """Run ONE forward pass of `images` (B, C, H, W) and record what happens inside.

    cam_class: None for no Grad-CAM, "pred" for the predicted class, or a class index (int or (B,)).
    cam_layers: the conv activations to explain (names as in `activations`); default the last one of each
    branch that has one (mid: the refinement conv after the transformer).
    FLOPs are counted with torch.utils.flop_counter on the first call per input shape, then cached;
    attention's matmuls are included because inspection runs the explicit attention path.
    """
    images = images.to(next(model.parameters()).device)
    rows = steps(model)
    key = (tuple(images.shape), images.dtype)
    cached = _FLOPS.setdefault(model, {}).get(key) if flops else None
    count = flops and cached is None
    attentions, activations, grids, shapes, flop_rows = {}, {}, {}, {}, {}
    counter = FlopCounterMode(display=False) if count else None
    if cam_class is None:
        cam_layers = []
    elif cam_layers is None:
        cam_layers = _cam_layers(model)
    elif unknown := set(cam_layers) - set(conv_layers(model)):
        raise ValueError(f"cam_layers={sorted(unknown)} are not conv layers of this model: expected some of "
                         f"{', '.join(conv_layers(model)) or 'none (it has no convolutions)'}")

    def keep(name, module, args, out):
        if isinstance(module, ToTokens):
            grids[name.rsplit(".", 1)[0]] = TokenGrid(*args[0].shape[-2:], module.prefix)
        if isinstance(module, (ConvStage, ResidualBlock)):
            activations[name] = out if name in cam_layers else out.detach()

    with ExitStack() as stack:
        stack.callback(_restore(model))
        model.eval()
        record_steps(stack, [(name, module) for name, module, _ in rows], counter, shapes, flop_rows, keep)
        for name, module, _ in rows:
            for sub in module.modules():
                if isinstance(sub, Attention):
                    sub.fused = False
                    hook = sub.probs.register_forward_hook(
                        lambda m, a, out, name=name: attentions.__setitem__(name, out.detach()))
                    stack.callback(hook.remove)
        stack.enter_context(torch.enable_grad() if cam_layers else torch.inference_mode())
        if counter is not None:
            stack.enter_context(counter)
        logits = model(images)
    if count:
        _FLOPS[model][key] = flop_rows
    flop_rows = flop_rows if count else (cached or {})
    table = [ShapeRow("input", (), tuple(images.shape), 0, 0, "image batch")]
    for name, module, note in rows:
        if name in shapes:
            table.append(ShapeRow(name, *shapes[name], sum(p.numel() for p in module.parameters()),
                                  flop_rows.get(name, 0), note))
    result = Inspection(logits.detach(), logits.detach().softmax(-1), attentions, activations, grids, table)
    if cam_layers:
        target = logits.argmax(-1) if isinstance(cam_class, str) else torch.as_tensor(cam_class).expand(len(logits))
        score = logits.gather(1, target.to(logits.device)[:, None]).sum()
        grads = torch.autograd.grad(score, [activations[n] for n in cam_layers])
        for name, grad in zip(cam_layers, grads):
            act = activations[name] = activations[name].detach()
            result.cam[name] = grad_cam(act, grad)
        result.cam_class = target.cpu()
    return result


def conv_layers(model: ConvFormer) -> list[str]:
    """Every conv activation inspection records (conv stages, mid's refinement conv), input first."""
    return [name for name, module, _ in steps(model) if isinstance(module, (ConvStage, ResidualBlock))]


def _cam_layers(model: ConvFormer) -> list[str]:
    """The last conv activation of each branch that has one (mid: the refinement conv)."""
    return list({name.split(".", 1)[0]: name for name in conv_layers(model)}.values())


def _restore(model: nn.Module):
    """Snapshot the flags inspection changes; the returned function puts them back."""
    training = [(m, m.training) for m in model.modules()]
    fused = [(m, m.fused) for m in model.modules() if isinstance(m, Attention)]

    def restore() -> None:
        for m, flag in training:
            m.training = flag
        for m, flag in fused:
            m.fused = flag
    return restore


__all__ = ["NOTES", "conv_layers", "inspect_convformer", "steps"]
