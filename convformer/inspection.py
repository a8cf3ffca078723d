"""See inside a model in one forward pass: attention maps, conv activations, token grids, Grad-CAM and the
tensor shape, parameters and FLOPs at every step from (B, C, H, W) to (B, num_classes).

Hooks live outside the model (pytorch-grad-cam, vit-pytorch's Recorder) and are always released; while
inspecting, attention takes its explicit softmax path so its probabilities can be read (timm's
AttentionExtract), and the model is restored exactly afterwards.
"""
from __future__ import annotations

import weakref
from contextlib import ExitStack
from dataclasses import dataclass, field

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from . import axes, relevance
from .layers import Attention, ConvStage, ConvStages, ResidualBlock, ToTokens
from .model import LAYOUTS, ConvFormer

NOTES = {"conv": "conv stage, stride 2", "proj": "1x1 conv to embed_dim", "patch": "patchify (conv k=s=patch)",
         "tokens": "grid -> tokens (+cls, +pos)", "blocks": "transformer block (attn + MLP)",
         "norm": "LayerNorm", "grid": "tokens -> grid", "refine": "3x3 residual conv on the token map",
         "pool": "pool to a vector", "merge": "branch merge", "head": "classifier"}


@dataclass
class ShapeRow:
    name: str
    input_shape: tuple  # (B, C, H, W), (B, N, C), ...; for the late merge one shape per branch
    output_shape: tuple[int, ...]
    params: int
    flops: int
    note: str = ""


@dataclass
class TokenGrid:
    h: int
    w: int
    prefix: int  # class token(s) before the h * w patch tokens


@dataclass
class Inspection:
    logits: torch.Tensor                      # (B, num_classes)
    probs: torch.Tensor                       # (B, num_classes), rows sum to 1
    attentions: dict[str, torch.Tensor]       # block -> (B, heads, N, N), rows sum to 1
    activations: dict[str, torch.Tensor]      # conv stage -> (B, C, h, w)
    token_grid: dict[str, TokenGrid]          # transformer branch -> its grid
    shapes: list[ShapeRow]                    # input first, logits last
    cam: dict[str, torch.Tensor] = field(default_factory=dict)  # conv layer -> Grad-CAM (B, h, w) in [0, 1]
    cam_class: torch.Tensor | None = None     # (B,) class each CAM explains
    relevance: dict[str, torch.Tensor] = field(default_factory=dict)  # grid -> Chefer relevance (B, h, w) in [0, 1]
    relevance_class: torch.Tensor | None = None  # (B,) class the relevance explains
    notes: list[str] = field(default_factory=list)  # where attention is not self-attention over one grid

    def grid_of(self, block: str) -> TokenGrid | None:
        """The token grid a block attends over: the `token_grid` entry whose name is the longest prefix of it."""
        owners = [k for k in self.token_grid if block == k or block.startswith(k + ".")]
        return self.token_grid[max(owners, key=len)] if owners else None

    def rollout_blocks(self) -> list[str]:
        """The blocks attention rollout multiplies: those of the last grid (a model whose stages attend over
        different grids, e.g. CoAtNet, has no rollout across them; our models have one grid)."""
        last = self.grid_of(next(reversed(self.attentions))) if self.attentions else None
        return [b for b in self.attentions if self.grid_of(b) is last]

    @property
    def params(self) -> int:
        return sum(r.params for r in self.shapes)

    @property
    def flops(self) -> int:
        return sum(r.flops for r in self.shapes)


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


def inspect(model: ConvFormer, images: torch.Tensor, cam_class: int | torch.Tensor | str | None = None,
            flops: bool = True, cam_layers: list[str] | None = None,
            relevance_class: int | torch.Tensor | str | None = None) -> Inspection:
    """Run ONE forward pass of `images` (B, C, H, W) and record what happens inside.

    cam_class: None for no Grad-CAM, "pred" for the predicted class, or a class index (int or (B,)).
    cam_layers: the conv activations to explain (names as in `activations`); default `default_cam_layers`
    (early, mid: the first conv stage; cnn, late: the last; measured, see there).
    relevance_class: None, "pred" or a class index, as cam_class: Chefer et al.'s class-specific relevance
    (convformer.relevance) over the blocks of the last token grid, from the same forward pass.
    FLOPs are counted with torch.utils.flop_counter on the first call per input shape, then cached;
    attention's matmuls are included because inspection runs the explicit attention path.
    Any other model (timm's, e.g. the ImageNet references) goes through `inspect_timm`, same result type.
    """
    if not isinstance(model, ConvFormer):
        from .inspect_timm import inspect_timm
        return inspect_timm(model, images, cam_class, flops, cam_layers, relevance_class)
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
        cam_layers = default_cam_layers(model)
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
                        lambda m, a, out, name=name: attentions.__setitem__(
                            name, out if relevance_class is not None else out.detach()))
                    stack.callback(hook.remove)
        stack.enter_context(torch.enable_grad() if cam_layers or relevance_class is not None
                            else torch.inference_mode())
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
    explain_attention(result, logits, relevance_class, retain_graph=bool(cam_layers))
    if cam_layers:
        target = logits.argmax(-1) if isinstance(cam_class, str) else torch.as_tensor(cam_class).expand(len(logits))
        score = logits.gather(1, target.to(logits.device)[:, None]).sum()
        grads = torch.autograd.grad(score, [activations[n] for n in cam_layers])
        for name, grad in zip(cam_layers, grads):
            act = activations[name] = activations[name].detach()
            result.cam[name] = grad_cam(act, grad)
        result.cam_class = target.cpu()
    return result


def explain_attention(result: Inspection, logits: torch.Tensor, relevance_class: int | torch.Tensor | str | None,
                      retain_graph: bool = False) -> None:
    """Fill `result.relevance` (Chefer et al. 2021) for the blocks of the last grid from attentions still in the
    graph of `logits`, then detach them. A no-op without `relevance_class` or attention."""
    blocks = result.rollout_blocks() if relevance_class is not None else []
    if blocks:
        grid = result.grid_of(blocks[-1])
        owner = next(k for k, g in result.token_grid.items() if g is grid)
        target = _target(logits, relevance_class)
        score = logits.gather(1, target[:, None]).sum()
        result.relevance[owner] = relevance.explain(score, result.attentions, blocks, (grid.h, grid.w), grid.prefix,
                                                    retain_graph)
        result.relevance_class = target.cpu()
    for name in result.attentions:
        result.attentions[name] = result.attentions[name].detach()


def _target(logits: torch.Tensor, cls: int | torch.Tensor | str) -> torch.Tensor:
    """The explained class per image (B,): "pred" for the predicted one, else an index (int or (B,))."""
    if isinstance(cls, str):
        return logits.argmax(-1)
    return torch.as_tensor(cls).to(logits.device).long().expand(len(logits))


def record_steps(stack: ExitStack, rows: list[tuple[str, nn.Module]], counter: FlopCounterMode | None,
                 shapes: dict, flop_rows: dict, keep=None) -> None:
    """Hook each (name, module) of `rows`: its (input, output) shape into `shapes`, its FLOPs into `flop_rows`
    when `counter` counts, then `keep(name, module, args, out)`. `stack` releases every hook."""
    start: dict[str, int] = {}

    def pre(name):
        def hook(module, args):
            if counter is not None:
                start[name] = counter.get_total_flops()
        return hook

    def post(name):
        def hook(module, args, out):
            shapes[name] = (_shape(args[0]), _shape(out))
            if counter is not None:
                flop_rows[name] = counter.get_total_flops() - start[name]
            if keep is not None:
                keep(name, module, args, out)
        return hook

    for name, module in rows:
        stack.callback(module.register_forward_pre_hook(pre(name)).remove)
        stack.callback(module.register_forward_hook(post(name)).remove)


def human(n: float, unit: str = "") -> str:
    """1234567 -> '1.23 M'."""
    for scale, suffix in ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(n) >= scale:
            return f"{n / scale:.3g} {suffix}{unit}"
    return f"{n:g} {unit}".strip()


def format_table(rows: list[ShapeRow]) -> str:
    """The shape table as aligned text with named axes ((B, C, H, W), (B, N, D) with N spelled out), and a total."""
    return axes.format_table(rows, human)


def grad_cam(act: torch.Tensor, grad: torch.Tensor) -> torch.Tensor:
    """Grad-CAM (Selvaraju et al. 2017): ReLU(sum_c mean_hw(dy/dA_c) * A_c), scaled to [0, 1] per image."""
    cam = torch.relu((grad.mean(dim=(2, 3), keepdim=True) * act).sum(1))  # (B, h, w)
    return cam / cam.flatten(1).amax(1).clamp_min(1e-12)[:, None, None]


def _shape(x: torch.Tensor | list[torch.Tensor]) -> tuple:
    """A tensor's shape, or for the merge's list of branch features a tuple of their shapes."""
    return tuple(x.shape) if isinstance(x, torch.Tensor) else tuple(tuple(t.shape) for t in x)


def conv_layers(model: ConvFormer) -> list[str]:
    """Every conv activation inspection records (conv stages, mid's refinement conv), input first."""
    if not isinstance(model, ConvFormer):  # a timm model (the ImageNet references)
        from .inspect_timm import conv_layers as timm_conv_layers
        return timm_conv_layers(model)
    return [name for name, module, _ in steps(model) if isinstance(module, (ConvStage, ResidualBlock))]


def default_cam_layers(model: nn.Module) -> list[str]:
    """The conv layer Grad-CAM explains by default, one per branch that has conv layers. Where a branch's
    conv stages feed global attention (early, mid) its first conv stage; where nothing global follows (cnn,
    late's CNN branch) its last, Grad-CAM's usual choice. Measured on the bundled checkpoints (held-out Shapes,
    the share of Grad-CAM peaks on the object; benchmarks/NOTES.md, "Grad-CAM: which conv layer lands on the
    object"): early 68 %, mid 63 %, late 80 %, cnn 64 %, each its model's best layer; the last conv layer of
    each branch gave early 44 %, mid 14 % (its refinement conv after the transformer: chance is 11 %)."""
    layers = conv_layers(model)
    if not isinstance(model, ConvFormer):  # a timm model (the ImageNet references): the last conv layer
        return layers[-1:]
    branches: dict[str, list[str]] = {}
    for name in layers:
        branches.setdefault(name.split(".", 1)[0], []).append(name)
    attends = {b for b, parts in LAYOUTS[model.config.fusion].items() if "blocks" in parts}
    return [names[0] if branch in attends else names[-1] for branch, names in branches.items()]


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


__all__ = ["Inspection", "ShapeRow", "TokenGrid", "conv_layers", "default_cam_layers", "grad_cam", "inspect",
           "steps"]
