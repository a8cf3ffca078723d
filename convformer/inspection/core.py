"""What both inspection engines share: the result (`Inspection`, its `ShapeRow`s and `TokenGrid`s), the step
recorder (shape and FLOPs of each hooked step), Grad-CAM and the table's text.

See inside a model in one forward pass: attention maps, conv activations, token grids, Grad-CAM and the
tensor shape, parameters and FLOPs at every step from (B, C, H, W) to (B, num_classes). Hooks live outside
the model (pytorch-grad-cam, vit-pytorch's Recorder) and are always released; while inspecting, attention
takes its explicit softmax path so its probabilities can be read (timm's AttentionExtract), and the model is
restored exactly afterwards.
"""
from __future__ import annotations

import weakref
from contextlib import ExitStack
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from .. import axes
from . import relevance


@dataclass
class ShapeRow:
    name: str
    input_shape: tuple  # (B, C, H, W), (B, N, C), ...; for the late merge one shape per branch
    output_shape: tuple[int, ...]
    params: int
    flops: int
    note: str = ""
    kind: str = ""      # what the step is, one of KINDS: the views read it instead of the name or the note


# the kinds of step a shape row can be (our models name theirs by part; timm's are classified by the timm engine)
KINDS = ("input", "conv", "proj", "patch", "tokens", "blocks", "stage", "norm", "grid", "refine", "pool", "merge",
         "head", "other")


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


_FLOPS: "weakref.WeakKeyDictionary[nn.Module, dict]" = weakref.WeakKeyDictionary()  # model -> {input key: FLOPs}


@dataclass
class Recording:
    """What one recorded forward pass gives every engine."""
    logits: torch.Tensor                 # (B, num_classes), still in the graph when Grad-CAM is wanted
    shapes: dict[str, tuple]             # step -> (input shape, output shape)
    flops: dict[str, int]                # step -> FLOPs (counted once per model and input shape, then cached)


def record(model: nn.Module, images: torch.Tensor, rows: list[tuple[str, nn.Module]],
           prepare: Callable[[ExitStack], None], *, keep: Callable | None = None, grad: bool = False,
           flops: bool = True) -> Recording:
    """ONE forward pass of `images` with each (name, module) of `rows` hooked (its shapes, its FLOPs, then
    `keep(name, module, args, out)`). `prepare(stack)` puts the model in its inspection state (eval, explicit
    attention) and hooks what the engine reads, registering on `stack` whatever undoes it: every hook and flag is
    released when the pass ends, also on error. `grad`: run with autograd (for Grad-CAM), else inference mode."""
    key = (tuple(images.shape), images.dtype)
    cached = _FLOPS.setdefault(model, {}).get(key) if flops else None
    counter = FlopCounterMode(display=False) if flops and cached is None else None
    shapes: dict[str, tuple] = {}
    flop_rows: dict[str, int] = {}
    with ExitStack() as stack:
        prepare(stack)
        record_steps(stack, rows, counter, shapes, flop_rows, keep)
        stack.enter_context(torch.enable_grad() if grad else torch.inference_mode())
        if counter is not None:
            stack.enter_context(counter)
        logits = model(images)
    if counter is not None:
        _FLOPS[model][key] = flop_rows
    return Recording(logits, shapes, flop_rows if counter is not None else (cached or {}))


def check_cam_layers(cam_layers: list[str] | None, available: list[str]) -> None:
    """ValueError naming what is allowed when `cam_layers` asks for a layer that is not a conv layer."""
    if cam_layers is not None and (unknown := set(cam_layers) - set(available)):
        raise ValueError(f"cam_layers={sorted(unknown)} are not conv layers of this model: expected some of "
                         f"{', '.join(available) or 'none (it has no convolutions)'}")


def explain(result: Inspection, logits: torch.Tensor, cam_layers: list[str],
            cam_class: int | torch.Tensor | str | None,
            relevance_class: int | torch.Tensor | str | None = None) -> Inspection:
    """The tail both engines share, from the graph the pass kept: the relevance of `relevance_class`
    (`explain_attention`), Grad-CAM of `cam_class` at `cam_layers` into `result.cam`, then every attention
    map and activation detached."""
    explain_attention(result, logits, relevance_class, retain_graph=bool(cam_layers))
    acts = result.activations
    if cam_layers:
        target = logits.argmax(-1) if isinstance(cam_class, str) else torch.as_tensor(cam_class).expand(len(logits))
        score = logits.gather(1, target.to(logits.device)[:, None]).sum()
        for name, grad in zip(cam_layers, torch.autograd.grad(score, [acts[n] for n in cam_layers])):
            acts[name] = acts[name].detach()
            result.cam[name] = grad_cam(acts[name], grad)
        result.cam_class = target.cpu()
    for name in acts:
        acts[name] = acts[name].detach()
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


__all__ = ["KINDS", "Inspection", "Recording", "ShapeRow", "TokenGrid", "check_cam_layers", "explain",
           "explain_attention", "format_table", "grad_cam", "human", "record", "record_steps"]
