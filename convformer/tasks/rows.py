"""The shape table past the backbone: the feature taps the head reads, the neck, the head's outputs and each
post-processing step as a row of its own, with named axes (heatmap (B, K=10, h=16, w=16) -> detections
(B, N=100, 6)). The backbone's own rows are `convformer.inspect(model.backbone, x).shapes`."""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from .decode import dense_decode, peaks, set_decode, topk
from .model import TaskModel


@dataclass
class TaskRow:
    name: str
    input_shape: tuple
    output_shape: tuple
    params: int
    flops: int
    note: str
    input_axes: str      # the input with named axes
    output_axes: str


def _axes(shape: tuple, names: str) -> str:
    """(1, 10, 16, 16) with 'B K h w' -> '(B=1, K=10, h=16, w=16)'; a numeric name leaves the number bare."""
    return "(" + ", ".join(str(v) if n.isdigit() else f"{n}={v}" for n, v in zip(names.split(), shape)) + ")"


class _Rows:
    def __init__(self) -> None:
        self.rows: list[TaskRow] = []

    def step(self, name: str, note: str, fn, inp: torch.Tensor, in_names: str, out_names: str,
             *modules: nn.Module | None, less: int = 0):
        """Run `fn` (one step) and add its row: params of `modules`, FLOPs counted minus `less` (what an
        earlier row already counted and `fn` runs again)."""
        with FlopCounterMode(display=False) as counter:
            out = fn()
        params = sum(p.numel() for m in modules if m is not None for p in m.parameters())
        first = out if isinstance(out, torch.Tensor) else next(iter(out.values())) if isinstance(out, dict) else out[0]
        self.rows.append(TaskRow(name, tuple(inp.shape), tuple(first.shape), params, counter.get_total_flops() - less,
                                 note, _axes(tuple(inp.shape), in_names), _axes(tuple(first.shape), out_names)))
        return out


@torch.no_grad()  # not inference_mode: the FLOP counter's module tracker needs autograd's graph
def task_shape_rows(model: TaskModel, x: torch.Tensor) -> list[TaskRow]:
    """Rows from the backbone's taps to the decoded output for the input batch `x` (B, 3, H, W)."""
    r = _Rows()
    feats = model.forward_taps(x)
    for (i, c, s), f in zip(model.taps, feats):
        name = model.backbone.feature_info[i]["module"].removeprefix("branches.")
        r.rows.append(TaskRow(f"tap {name}", tuple(x.shape), tuple(f.shape), 0, 0,
                              f"backbone feature at stride {s}", _axes(tuple(x.shape), "B C H W"),
                              _axes(tuple(f.shape), "B C h w")))
    neck = model.neck
    if neck.simple:
        levels = r.step("neck.pyramid", "ViTDet simple pyramid: deconv / identity / max-pool", lambda: neck.pyramid(feats),
                        feats[-1], "B C h w", "B C h w", neck.up, neck.down)
    fused = r.step("neck.fuse", "SegFormer all-MLP fusion: Linear per level, upsample, concat, 1x1",
                   lambda: neck(feats), feats[0], "B C h w", "B D h w", neck.proj, neck.fuse,
                   less=r.rows[-1].flops if neck.simple else 0)
    hw = tuple(x.shape[-2:])
    if model.head_kind == "dense":
        _dense_rows(r, model, fused, hw)
    elif model.head_kind == "set":
        _set_rows(r, model, fused, hw)
    else:
        hc = model.head_config
        what = (f"{hc.refine} x (3x3 conv, BN, ReLU), " if hc.refine else "") + \
            (f"+ the image's stride-2 path ({hc.skip} ch) at stride 2, " if hc.skip else "")
        out = r.step("head.classify", what + "1x1 conv to K+1 classes, upsampled to the input", lambda: model.head(fused, x),
                     fused, "B D h w", "B K+1 H W", model.head)
        r.step("argmax", "class per pixel (0 = background)", lambda: out["logits"].argmax(1), out["logits"],
               "B K+1 H W", "B H W")
    return r.rows


def _dense_rows(r: _Rows, model: TaskModel, fused: torch.Tensor, hw: tuple[int, int]) -> None:
    head, k = model.head, model.head_config.max_detections
    t = r.step("head.trunk", "shared 3x3 conv + ReLU", lambda: head.trunk(fused), fused, "B D h w", "B D h w",
               head.trunk)
    heat = r.step("head.heatmap", "class-centre heatmaps (CenterNet), 1x1 conv", lambda: head.heatmap(t), t,
                  "B D h w", "B K h w", head.heatmap)
    size = r.step("head.size", "box width, height in cells, 1x1 conv", lambda: head.size(t), t, "B D h w",
                  "B 2 h w", head.size)
    offset = r.step("head.offset", "centre offset in its cell, 1x1 conv", lambda: head.offset(t), t, "B D h w",
                    "B 2 h w", head.offset)
    prob = r.step("decode.sigmoid", "heatmap probabilities", lambda: heat.sigmoid(), heat, "B K h w", "B K h w")
    top = r.step("decode.peaks", "3x3 max-pool equality: local maxima, no NMS", lambda: peaks(prob), prob,
                 "B K h w", "B K h w")
    r.step("decode.topk", f"top {k} peaks over classes and cells", lambda: topk(top, k), top, "B K h w", "B N")
    r.step("decode.boxes", "(centre + offset) * stride -/+ size / 2: x1 y1 x2 y2 score class",
           lambda: dense_decode(heat, size, offset, hw, k), heat, "B K h w", "B N 6")


def _set_rows(r: _Rows, model: TaskModel, fused: torch.Tensor, hw: tuple[int, int]) -> None:
    head = model.head
    mem = r.step("head.input_proj", "3x3 conv, stride 2: the memory grid", lambda: head.input_proj(fused), fused,
                 "B D h w", "B D h' w'", head.input_proj)
    r.step("head.memory", "grid -> tokens (+ 2-D sin-cos positions)", lambda: mem.flatten(2).transpose(1, 2), mem,
           "B D h' w'", "B N D")
    out = r.step("head.decoder", f"{len(head.layers)} decoder layers: Q queries, self- then cross-attention",
                 lambda: head(fused), fused, "B D h w", "B Q K+1", head.anchors, head.query_pos, head.layers,
                 head.class_embed, head.bbox_embed, less=r.rows[-2].flops)
    r.rows.append(TaskRow("head.boxes", tuple(fused.shape), tuple(out["pred_boxes"].shape), 0, 0,
                          "box per query: cx cy w h in [0, 1]", _axes(tuple(fused.shape), "B D h w"),
                          _axes(tuple(out["pred_boxes"].shape), "B Q 4")))
    a = out["cross_attn"]
    r.rows.append(TaskRow("head.cross_attn", tuple(fused.shape), tuple(a.shape), 0, 0,
                          "where each query looked, per layer", _axes(tuple(fused.shape), "B D h w"),
                          _axes(tuple(a.shape), "B L Q h' w'")))
    r.step("decode.postprocess", "softmax, drop no-object, cxcywh -> xyxy pixels: x1 y1 x2 y2 score class",
           lambda: set_decode(out["pred_logits"], out["pred_boxes"], hw), out["pred_logits"], "B Q K+1", "B Q 6")
