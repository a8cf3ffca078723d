"""The inspection engine of our own models (`ConvFormer`): the steps of the shape table read from the model's
branches, attention read from each `Attention`'s named softmax (its explicit path while inspecting), conv
activations from `ConvStage` / `ResidualBlock`, token grids from `ToTokens`."""
from __future__ import annotations

import weakref
from contextlib import ExitStack
from typing import NamedTuple

import torch
from torch import nn

from ..layers import Attention, ConvStage, ConvStages, ResidualBlock, ToTokens
from ..model import LAYOUTS, ConvFormer
from .core import Inspection, ShapeRow, TokenGrid, check_cam_layers, explain, record

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


class _Structure(NamedTuple):
    """What inspection walks the module tree for, once per model (the tree does not change after it is built):
    every module, the attention modules under each row, and each row's parameter count."""
    rows: tuple[int, ...]  # the rows' modules (ids): a replaced head (timm's reset_classifier) is a new structure
    modules: list[nn.Module]
    attentions: dict[str, list[Attention]]
    params: dict[str, int]


_STRUCTURES: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _structure(model: ConvFormer, rows: list[tuple[str, nn.Module, str]]) -> _Structure:
    key = tuple(id(module) for _, module, _ in rows)
    found = _STRUCTURES.get(model)
    if found is None or found.rows != key:
        found = _STRUCTURES[model] = _Structure(
            key, list(model.modules()),
            {name: [m for m in module.modules() if isinstance(m, Attention)] for name, module, _ in rows},
            {name: sum(p.numel() for p in module.parameters()) for name, module, _ in rows})
    return found


def inspect_convformer(model: ConvFormer, images: torch.Tensor, cam_class: int | torch.Tensor | str | None = None,
                       flops: bool = True, cam_layers: list[str] | None = None,
                       relevance_class: int | torch.Tensor | str | None = None) -> Inspection:
    """`convformer.inspect` for a ConvFormer (see there for the arguments): its steps, attention read from each
    `Attention`'s softmax on the explicit path, token grids from `ToTokens`, conv activations from
    `ConvStage` / `ResidualBlock`."""
    images = images.to(next(model.parameters()).device)
    rows = steps(model)
    tree = _structure(model, rows)
    if cam_class is not None:
        check_cam_layers(cam_layers, conv_layers(model))
    cam_layers = [] if cam_class is None else default_cam_layers(model) if cam_layers is None else cam_layers
    keep_attention = relevance_class is not None  # in the graph, for the relevance's gradient
    attentions, activations, grids = {}, {}, {}

    def prepare(stack: ExitStack) -> None:
        stack.callback(_restore(tree))
        if any(m.training for m in tree.modules):  # eval() sets a flag on every module: ~1/4 of a small model's
            model.eval()                              # inspection when it is already in eval mode
        for name, _, _ in rows:
            for sub in tree.attentions[name]:
                sub.fused = False
                stack.callback(sub.probs.register_forward_hook(
                    lambda m, a, out, name=name: attentions.__setitem__(
                        name, out if keep_attention else out.detach())).remove)

    def keep(name, module, args, out):
        if isinstance(module, ToTokens):
            grids[name.rsplit(".", 1)[0]] = TokenGrid(*args[0].shape[-2:], module.prefix)
        if isinstance(module, (ConvStage, ResidualBlock)):
            activations[name] = out if name in cam_layers else out.detach()

    rec = record(model, images, [(name, module) for name, module, _ in rows], prepare, keep=keep,
                 grad=bool(cam_layers) or keep_attention, flops=flops)
    table = [ShapeRow("input", (), tuple(images.shape), 0, 0, "image batch", "input")]
    table += [ShapeRow(name, *rec.shapes[name], tree.params[name], rec.flops.get(name, 0), note, _kind(name))
              for name, _, note in rows if name in rec.shapes]
    logits = rec.logits.detach()
    result = Inspection(logits, logits.softmax(-1), attentions, activations, grids, table)
    return explain(result, rec.logits, cam_layers, cam_class, relevance_class)


def _kind(name: str) -> str:
    """A row's kind from its name: `<branch>.<part>[.<index>]`, `merge` or `head`."""
    parts = name.split(".")
    return parts[1] if len(parts) > 1 else parts[0]


def conv_layers(model: ConvFormer) -> list[str]:
    """Every conv activation inspection records (conv stages, mid's refinement conv), input first."""
    return [name for name, module, _ in steps(model) if isinstance(module, (ConvStage, ResidualBlock))]


def default_cam_layers(model: ConvFormer) -> list[str]:
    """The conv layer Grad-CAM explains by default, one per branch that has conv layers. Where a branch's
    conv stages feed global attention (early, mid) its first conv stage; where nothing global follows (cnn,
    late's CNN branch) its last, Grad-CAM's usual choice. Measured on the bundled checkpoints (held-out Shapes,
    the share of Grad-CAM peaks on the object; benchmarks/NOTES.md, "Grad-CAM: which conv layer lands on the
    object"): early 68 %, mid 63 %, late 80 %, cnn 64 %, each its model's best layer; the last conv layer of
    each branch gave early 44 %, mid 14 % (its refinement conv after the transformer: chance is 11 %)."""
    branches: dict[str, list[str]] = {}
    for name in conv_layers(model):
        branches.setdefault(name.split(".", 1)[0], []).append(name)
    attends = {b for b, parts in LAYOUTS[model.config.fusion].items() if "blocks" in parts}
    return [names[0] if branch in attends else names[-1] for branch, names in branches.items()]


def _restore(tree: _Structure):
    """Snapshot the flags inspection changes; the returned function puts them back."""
    training = [(m, m.training) for m in tree.modules]
    fused = [(m, m.fused) for m in tree.modules if isinstance(m, Attention)]

    def restore() -> None:
        for m, flag in training:
            if m.training != flag:  # only what changed: nn.Module.__setattr__ is slow
                m.training = flag
        for m, flag in fused:
            m.fused = flag
    return restore


__all__ = ["NOTES", "conv_layers", "default_cam_layers", "inspect_convformer", "steps"]
