"""Inspection of timm models (the ImageNet references): the same `Inspection` as for our own models, from one
forward pass, with the same hooks-outside-the-model discipline.

The shape table follows the model's own structure: its top-level parts, with `blocks` / `stages` listed one by
one, whole member models (late fusion) and a hybrid's conv backbone opened up. Attention is read where timm's
attention modules expose it: with `fused_attn` off they compute an explicit softmax and pass it through
`attn_drop`, whose output is hooked (timm.utils.AttentionExtract does the same). Each block's grid is read
from what its attention sees: (B, C, H, W) input -> an H x W grid (CoAtNet); (B, N, C) tokens -> the ViT's
patch grid plus its prefix tokens, checked against N. Attention that is not self-attention over one grid is
left out and said so in `notes`: a wrong map is never drawn.
"""
from __future__ import annotations

import weakref
from contextlib import ExitStack
from dataclasses import dataclass

import torch
from torch import nn

from .core import Inspection, ShapeRow, TokenGrid, check_cam_layers, explain, record

_SKIP = (nn.Identity, nn.Dropout)


def is_attention(module: nn.Module) -> bool:
    """A timm attention module whose probabilities can be read (explicit path + attn_drop)."""
    return hasattr(module, "fused_attn") and isinstance(getattr(module, "attn_drop", None), nn.Module)


def _opens(module: nn.Module) -> bool:
    """Parts listed by their own parts: a whole model (late fusion's members, a hybrid's ResNet backbone) or a
    hybrid patch embedding (conv backbone + projection)."""
    return hasattr(module, "forward_features") or (hasattr(module, "backbone") and hasattr(module, "proj"))


def steps(model: nn.Module, prefix: str = "") -> list[tuple[str, nn.Module | None]]:
    """The rows of the shape table, in order: (name, module); a ViT's token step has module None."""
    rows: list[tuple[str, nn.Module | None]] = []
    for name, child in model.named_children():
        full = prefix + name
        if isinstance(child, _SKIP):
            continue
        if _opens(child):
            rows += steps(child, full + ".")
        elif name in ("blocks", "stages") and isinstance(child, (nn.Sequential, nn.ModuleList)):
            if name == "blocks" and hasattr(model, "num_prefix_tokens"):
                rows.append((prefix + "tokens", None))  # class token + positional embedding (the ViT's own)
            rows += [(f"{full}.{i}", sub) for i, sub in enumerate(child)]
        else:
            rows.append((full, child))
    return rows


def _has(module: nn.Module, kind: type) -> bool:
    return any(isinstance(m, kind) for m in module.modules())


@dataclass
class _Plan:
    """What inspection needs to know about a model's structure, worked out once per model."""
    rows: list[tuple[str, nn.Module | None]]
    kinds: dict[str, str]                   # row -> class, e.g. "MaxxVitStage", "2 x BasicBlock"
    params: dict[str, int]                  # row -> parameters (a ViT's tokens row: its own class / pos)
    conv: set[str]                          # rows with convolutions and no attention
    transformer: set[str]                   # rows holding attention
    attention: list[tuple[str, nn.Module]]  # (block, attention module), block = the module's parent
    vits: list[tuple[str, nn.Module]]       # ("vit." or "", a ViT with a patch embedding)
    modules: list[nn.Module]                # all of them, for the training flags
    module: dict[str, nn.Module | None]     # row -> module
    unreadable: list[str]                   # attention modules whose probabilities cannot be read


_PLANS: "weakref.WeakKeyDictionary[nn.Module, _Plan]" = weakref.WeakKeyDictionary()


def _plan(model: nn.Module) -> _Plan:
    if model in _PLANS:
        return _PLANS[model]
    rows = steps(model)
    named = dict(model.named_modules())
    kinds, params, conv, transformer = {}, {}, set(), set()
    for name, module in rows:
        if module is None:  # the ViT's own parameters: class token(s), positional embedding
            vit = named[name[:-len("tokens")].rstrip(".")]
            params[name] = sum(p.numel() for p in vit._parameters.values() if p is not None)
            continue
        kind = type(module).__name__
        if isinstance(module, nn.Sequential) and len(module) and len({type(m) for m in module}) == 1:
            kind = f"{len(module)} x {type(module[0]).__name__}"  # a ResNet layer: 2 x BasicBlock
        kinds[name], params[name] = kind, sum(p.numel() for p in module.parameters())
        if any(is_attention(m) for m in module.modules()):
            transformer.add(name)
        elif _has(module, nn.Conv2d) and getattr(module, "flatten", False) is not True:
            conv.add(name)  # not timm's PatchEmbed, which flattens its conv's map into tokens
    attention = [(name.rsplit(".", 1)[0], m) for name, m in named.items() if is_attention(m)]
    vits = [(f"{name}." if name else "", m) for name, m in named.items()
            if hasattr(m, "num_prefix_tokens") and hasattr(getattr(m, "patch_embed", None), "proj")]
    plan = _PLANS[model] = _Plan(rows, kinds, params, conv, transformer, attention, vits, list(named.values()),
                                 dict(rows), _unreadable(named))
    return plan


def _unreadable(named: dict[str, nn.Module]) -> list[str]:
    """Attention modules whose probabilities cannot be read (no explicit path with `attn_drop`, e.g. LeViT's)."""
    found = [name for name, m in named.items() if "Attention" in type(m).__name__ and not is_attention(m)
             and not any(is_attention(sub) for sub in m.modules())]
    return [n for n in found if not any(n.startswith(f"{other}.") for other in found)]  # outermost only


def _note(name: str, plan: _Plan, inp: tuple, out: tuple, grids: dict[str, TokenGrid]) -> str:
    """What a row does, from its class and its shapes."""
    if name not in plan.kinds:
        return "grid -> tokens (+cls, +pos)"
    kind, module = plan.kinds[name], plan.module[name]
    if name in plan.transformer:
        grid = grids.get(name)
        where = f" over {grid.h} x {grid.w}" + (f" + {grid.prefix} cls" if grid.prefix else "") if grid else ""
        return f"transformer {'stage' if name.split('.')[-2:-1] == ['stages'] else 'block'} ({kind}){where}"
    if isinstance(module, nn.Linear):
        return "classifier" if out[-1] >= 1000 or name.endswith(("head", "fc")) else "linear"
    if len(out) == 4 and name in plan.conv:
        stride = inp[-1] // out[-1] if len(inp) == 4 and out[-1] else 0
        return f"conv ({kind})" + (f", stride {stride}" if stride > 1 else "")
    if len(out) == 3 and len(inp) == 4 and _has(module, nn.Conv2d):
        return f"patchify (conv), flattened to tokens ({kind})"
    if len(out) == 2 and len(inp) in (3, 4) or kind == "ClassifierHead":
        return f"pool to a vector ({kind})" if len(out) == 2 and out[-1] < 1000 else f"pool + classifier ({kind})"
    if isinstance(inp[0], tuple):
        return "mean of the members' class probabilities"
    return kind


def conv_layers(model: nn.Module) -> list[str]:
    """Every conv activation inspection records (rows with convolutions and no attention), input first."""
    plan = _plan(model)
    return [name for name, _ in plan.rows if name in plan.conv]


def inspect_timm(model: nn.Module, images: torch.Tensor, cam_class: int | torch.Tensor | str | None = None,
                 flops: bool = True, cam_layers: list[str] | None = None,
                 relevance_class: int | torch.Tensor | str | None = None) -> Inspection:
    """`convformer.inspect` for a timm model (or the late-fusion pair of two): one forward pass of
    `images` (B, C, H, W); see `convformer.inspection.inspect` for the arguments."""
    images = images.to(next(model.parameters()).device)
    plan = _plan(model)
    check_cam_layers(cam_layers, conv_layers(model))
    want_cam, want_relevance = cam_class is not None, relevance_class is not None
    attn_inputs, attentions, activations = {}, {}, {}
    patch_grids: dict[str, tuple[int, int]] = {}

    def prepare(stack: ExitStack) -> None:
        stack.callback(_restore(model, plan))
        for block, module in plan.attention:
            module.fused_attn = False
            stack.callback(module.register_forward_pre_hook(
                lambda m, a, block=block: attn_inputs.__setitem__(block, tuple(a[0].shape))).remove)
            stack.callback(module.attn_drop.register_forward_hook(
                lambda m, a, out, block=block: attentions.__setitem__(
                    block, out if want_relevance else out.detach())).remove)
        for vit, module in plan.vits:
            stack.callback(module.patch_embed.proj.register_forward_hook(
                lambda m, a, out, vit=vit: patch_grids.__setitem__(vit, tuple(out.shape[-2:]))).remove)

    def keep(name, module, args, out):
        if name in plan.conv and out.ndim == 4:  # kept in the graph only while Grad-CAM needs it
            activations[name] = out if want_cam else out.detach()

    rec = record(model, images, [(n, m) for n, m in plan.rows if m is not None], prepare, keep=keep,
                 grad=want_cam or want_relevance, flops=flops)
    grids, notes = _grids(model, dict(plan.vits), attentions, attn_inputs, patch_grids)
    if plan.unreadable:
        notes.append(f"{len(plan.unreadable)} attention module(s) ({plan.unreadable[0]}, ...) compute their "
                     "probabilities without a readable step; their maps are not drawn.")
    logits = rec.logits.detach()
    result = Inspection(logits, logits.softmax(-1), attentions, activations, grids,
                        _table(plan, images, rec.shapes, rec.flops, grids), notes=notes)
    cam_layers = [] if not want_cam else _cam_layers(list(activations)) if cam_layers is None else cam_layers
    return explain(result, rec.logits, cam_layers, cam_class, relevance_class)


def _table(plan: _Plan, images: torch.Tensor, shapes: dict, flops: dict, grids: dict) -> list[ShapeRow]:
    """The shape table, input first; a ViT's tokens row spans its patch embedding's output to its first block."""
    table = [ShapeRow("input", (), tuple(images.shape), 0, 0, "image batch", "input")]
    for name, module in plan.rows:
        if module is None:
            vit = name[:-len("tokens")]
            if f"{vit}blocks.0" in shapes:
                before = shapes[f"{vit}patch_embed"][1] if f"{vit}patch_embed" in shapes else table[-1].output_shape
                table.append(ShapeRow(name, before, shapes[f"{vit}blocks.0"][0], plan.params[name], 0,
                                      _note(name, plan, (), (), grids), "tokens"))
        elif name in shapes:
            note = _note(name, plan, *shapes[name], grids)
            table.append(ShapeRow(name, *shapes[name], plan.params[name], flops.get(name, 0), note, _kind(note)))
    return table


# a timm row's note (from `_note`) -> its kind
_KIND_OF_NOTE = (("conv", "conv"), ("patchify", "patch"), ("grid -> tokens", "tokens"), ("transformer block", "blocks"),
                 ("transformer stage", "stage"), ("pool", "pool"), ("classifier", "head"), ("mean of", "merge"))


def _kind(note: str) -> str:
    return next((kind for start, kind in _KIND_OF_NOTE if note.startswith(start)), "norm" if "Norm" in note else "other")


def _grids(model, vits, attentions, attn_inputs, patch_grids) -> tuple[dict[str, TokenGrid], list[str]]:
    """Each block's token grid, keyed by its container (e.g. `blocks`, `vit.blocks`, `stages.2`); attention that
    is not self-attention over one grid is dropped from `attentions` with a sentence in the notes."""
    grids: dict[str, TokenGrid] = {}
    notes: list[str] = []
    dropped: dict[tuple[int, int], list[str]] = {}
    for block in list(attentions):
        attn, shape = attentions[block], attn_inputs.get(block, ())
        owner = block.rsplit(".", 1)[0]        # blocks / vit.blocks / stages.2.blocks
        grid = None
        if len(shape) == 4:                    # (B, C, H, W): attention over this map's H x W cells
            grid = TokenGrid(shape[2], shape[3], 0)
            owner = owner.removesuffix(".blocks")
        else:                                  # (B, N, C): a ViT's patch grid plus its prefix tokens
            vit = next((v for v in sorted(patch_grids, key=len, reverse=True) if block.startswith(v)), None)
            if vit is not None:
                h, w = patch_grids[vit]
                grid = TokenGrid(h, w, int(vits[vit].num_prefix_tokens))
        n_q, n_k = attn.shape[-2:]
        if grid is None or n_q != n_k or n_k != grid.prefix + grid.h * grid.w:
            del attentions[block]
            dropped.setdefault((n_q, n_k), []).append(block)
            continue
        grids.setdefault(owner, grid)
    for (n_q, n_k), blocks in dropped.items():
        notes.append(f"{len(blocks)} block(s) ({blocks[0]}, ...) attend over {n_q} queries and {n_k} keys that "
                     "are not one image grid (e.g. MobileViT's unfolded patches); their maps are not drawn.")
    if len(grids) > 1 and not hasattr(model, "merge"):
        sizes = ", ".join(f"{k}: {g.h} x {g.w}" for k, g in grids.items())
        notes.append(f"Each stage attends over its own grid ({sizes}); tokens do not carry over between grids, "
                     f"so rollout multiplies the blocks of the last grid ({next(reversed(grids))}) only.")
    return grids, notes


def _cam_layers(conv_rows: list[str]) -> list[str]:
    """The last conv row of each member model (late fusion: the CNN's), else of the model."""
    last: dict[str, str] = {}
    for name in conv_rows:
        last[name.split(".", 1)[0] if name.startswith(("cnn.", "vit.")) else ""] = name
    return list(last.values())


def _restore(model: nn.Module, plan: _Plan):
    """Put the model in eval mode with explicit attention; the returned function puts back what changed
    (only those flags: setting an attribute on every module of a ViT costs more than its attention)."""
    training = [m for m in plan.modules if m.training]
    fused = [(m, m.fused_attn) for _, m in plan.attention]
    for m in training:
        m.training = False

    def restore() -> None:
        for m in training:
            m.training = True
        for m, flag in fused:
            m.fused_attn = flag
    return restore


__all__ = ["conv_layers", "inspect_timm", "is_attention", "steps"]
