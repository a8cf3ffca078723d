"""Task heads on a ConvFormer backbone's feature taps: one neck, then a head per task.

- `Neck`: the backbone's taps (one per branch and stride, stride >= 4) -> one fused map at the finest stride.
  A backbone with a single stride (the plain ViT) first gets ViTDet's simple feature pyramid (Li et al. 2022,
  "Exploring Plain Vision Transformer Backbones for Object Detection"): a 2x2 deconv, identity and a 2x2
  max-pool make strides s/2, s and 2s from the one map. The fusion is SegFormer's all-MLP decoder (Xie et al.
  2021): a Linear (1x1 conv) per level to `dim`, an upsample to the finest level, a concat, a 1x1 fuse.
- `DenseHead`: CenterNet (Zhou et al. 2019, "Objects as Points"): per-class centre heatmaps, box size and
  sub-cell offset, each a 3x3 conv, ReLU, 1x1 conv on the fused map.
- `SetHead`: DETR (Carion et al. 2020): Q object queries, each decoder layer self-attention among the
  queries then cross-attention to the backbone's tokens (the fused map at stride 8, with 2-D sin-cos
  positions), a class (K + 1, the last is "no object") and a box (cx, cy, w, h normalised) per query. Plain
  DETR trains slowly (0.02 mAP@0.5 where the dense head has 0.87; benchmarks/NOTES.md, 13c); three known fixes
  make its queries local: each query owns an anchor box (DAB-DETR, Liu et al. 2022), first on a grid, learned;
  its positional part is the anchor centre's sin-cos code through an MLP; each layer predicts the box as an
  offset of the previous one in logit space (Deformable DETR's box refinement, Zhu et al. 2021), and its
  cross-attention gets a Gaussian prior around the current centre, one width per head (SMCA, Gao et al. 2021).
- `SegFormerHead`: optional 3x3 conv refinement and a DeepLabv3+-style low-level path from the image, then a
  1x1 classifier to K + 1 classes (0 = background), upsampled to the input.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

# Plain torch only: `convformer.tasks.export` copies these classes into the one-file export as they are.


def sincos_2d(h: int, w: int, dim: int, device=None, dtype=None) -> torch.Tensor:
    """Fixed 2-D sin-cos positions (1, h * w, dim), as DETR's: a quarter of the channels each sin / cos of y / x."""
    ys, xs = torch.meshgrid(torch.arange(h, device=device, dtype=torch.float32),
                            torch.arange(w, device=device, dtype=torch.float32), indexing="ij")
    return sincos_points(torch.stack([ys.flatten(), xs.flatten()], -1), dim).unsqueeze(0).to(dtype or torch.float32)


def sincos_points(yx: torch.Tensor, dim: int) -> torch.Tensor:
    """Points (..., 2) as (y, x) in grid cells -> their sin-cos codes (..., dim), the same code as `sincos_2d`'s."""
    quarter = dim // 4
    omega = 1.0 / 10000 ** (torch.arange(quarter, device=yx.device, dtype=torch.float32) / quarter)
    y, x = yx[..., :1].float() * omega, yx[..., 1:].float() * omega                  # (..., dim / 4)
    return F.pad(torch.cat([y.sin(), y.cos(), x.sin(), x.cos()], -1), (0, dim - 4 * quarter))


class Neck(nn.Module):
    """Feature taps [(B, C_i, h_i, w_i)] finest first -> (B, dim, h_0, w_0) (SegFormer fusion; ViTDet pyramid
    first when every tap has the same stride)."""

    def __init__(self, levels: list[tuple[int, int]], dim: int):  # (channels, stride) per tap, finest first
        super().__init__()
        self.simple = len({s for _, s in levels}) == 1
        if self.simple:
            c = levels[-1][0]
            self.up = nn.ConvTranspose2d(c, c, 2, stride=2)  # s -> s/2
            self.down = nn.MaxPool2d(2, ceil_mode=True)      # s -> 2s
            levels = [(c, levels[0][1] // 2), (c, levels[0][1]), (c, levels[0][1] * 2)]
        self.levels = levels
        self.proj = nn.ModuleList(nn.Conv2d(c, dim, 1) for c, _ in levels)  # SegFormer's per-level Linear
        self.fuse = nn.Sequential(nn.Conv2d(dim * len(levels), dim, 1, bias=False), nn.BatchNorm2d(dim), nn.ReLU())
        self.stride = levels[0][1]

    def pyramid(self, feats: list[torch.Tensor]) -> list[torch.Tensor]:
        """The levels the fusion reads: the taps, or ViTDet's three maps from the last one."""
        if not self.simple:
            return feats
        x = feats[-1]
        return [self.up(x), x, self.down(x)]

    def forward(self, feats: list[torch.Tensor]) -> torch.Tensor:
        levels = self.pyramid(feats)
        size = levels[0].shape[-2:]
        x = torch.cat([F.interpolate(p(f), size=size, mode="bilinear", align_corners=False) if f.shape[-2:] != size
                       else p(f) for p, f in zip(self.proj, levels)], 1)  # (B, dim * L, h, w)
        return self.fuse(x)  # (B, dim, h, w)


class DenseHead(nn.Module):
    """(B, dim, h, w) -> heatmap logits (B, K, h, w), size (B, 2, h, w) as (w, h) in cells, offset (B, 2, h, w)
    of the centre within its cell (x, y). One shared 3x3 conv + ReLU, then a 1x1 conv per output (CenterNet
    gives each output its own 3x3 conv: three times the cost, the head's largest part, for no gain measured
    here; benchmarks/NOTES.md)."""

    def __init__(self, dim: int, num_classes: int):
        super().__init__()
        self.trunk = nn.Sequential(nn.Conv2d(dim, dim, 3, padding=1), nn.ReLU())
        self.heatmap, self.size, self.offset = nn.Conv2d(dim, num_classes, 1), nn.Conv2d(dim, 2, 1), nn.Conv2d(dim, 2, 1)
        nn.init.constant_(self.heatmap.bias, -2.19)  # sigmoid = 0.1 at the start (CenterNet's prior)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        x = self.trunk(x)
        return {"heatmap": self.heatmap(x), "size": self.size(x), "offset": self.offset(x)}


class DecoderLayer(nn.Module):
    """DETR's decoder layer (post-norm): queries attend to each other, then to the memory tokens, then an MLP.
    Returns the queries and the cross-attention (B, Q, N), averaged over heads."""

    def __init__(self, dim: int, heads: int, mlp_ratio: float = 2.0):
        super().__init__()
        self.self_attn = nn.MultiheadAttention(dim, heads, batch_first=True)
        self.cross_attn = nn.MultiheadAttention(dim, heads, batch_first=True)
        self.mlp = nn.Sequential(nn.Linear(dim, int(dim * mlp_ratio)), nn.GELU(), nn.Linear(int(dim * mlp_ratio), dim))
        self.norm1, self.norm2, self.norm3 = nn.LayerNorm(dim), nn.LayerNorm(dim), nn.LayerNorm(dim)

    def forward(self, q: torch.Tensor, query_pos: torch.Tensor, memory: torch.Tensor, pos: torch.Tensor,
                bias: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        x = q + query_pos                                                            # bias: (B * heads, Q, N)
        q = self.norm1(q + self.self_attn(x, x, q, need_weights=False)[0])          # (B, Q, D)
        out, attn = self.cross_attn(q + query_pos, memory + pos, memory, attn_mask=bias)  # attn (B, Q, N)
        q = self.norm2(q + out)
        return self.norm3(q + self.mlp(q)), attn


class SetHead(nn.Module):
    """(B, dim, h, w) at stride s -> pred_logits (B, Q, K+1), pred_boxes (B, Q, 4) cxcywh in [0, 1] of the
    input, per layer: layer_logits (B, L, Q, K+1), layer_boxes (B, L, Q, 4) (DETR's auxiliary outputs) and
    cross_attn (B, L, Q, h', w') over the memory grid at stride 2s. Each query starts from its anchor box
    (`anchors`: logits of cxcywh, first on a grid); each layer looks around the box so far and moves it."""

    def __init__(self, dim: int, num_classes: int, queries: int, layers: int, heads: int):
        super().__init__()
        self.input_proj = nn.Conv2d(dim, dim, 3, stride=2, padding=1)
        self.anchors = nn.Embedding(queries, 4)                                    # (Q, 4) logits of cxcywh
        self.anchors.weight.data.copy_(self.grid_anchors(queries))
        self.query_pos = nn.Sequential(nn.Linear(dim, dim), nn.ReLU(), nn.Linear(dim, dim))  # centre code -> pos
        self.layers = nn.ModuleList(DecoderLayer(dim, heads) for _ in range(layers))
        self.class_embed = nn.Linear(dim, num_classes + 1)
        self.bbox_embed = nn.Sequential(nn.Linear(dim, dim), nn.ReLU(), nn.Linear(dim, 4))  # offset in logits
        nn.init.zeros_(self.bbox_embed[-1].weight)                                 # start: the box so far
        nn.init.zeros_(self.bbox_embed[-1].bias)
        self.heads = heads

    @staticmethod
    def grid_anchors(queries: int, size: float = 0.3) -> torch.Tensor:
        """Q anchors (Q, 4) as logits of (cx, cy, w, h): centres on a near-square grid over the image, row by
        row; w = h = `size` (a Shapes object is 0.2-0.5 of the image)."""
        rows = max(1, int(queries ** 0.5))
        cols = -(-queries // rows)
        i = torch.arange(queries, dtype=torch.float32)
        cx, cy = (i % cols + 0.5) / cols, (i // cols + 0.5) / -(-queries // cols)
        return torch.stack([cx, cy, torch.full_like(cx, size), torch.full_like(cx, size)], -1).logit()

    def attention_prior(self, centre: torch.Tensor, h: int, w: int) -> torch.Tensor:
        """Centres (B, Q, 2) as (x, y) in [0, 1] -> an additive cross-attention bias (B * heads, Q, h * w): a
        Gaussian of the distance in cells, width 2^i cells for head i (1, 2, 4, 8: near to almost flat)."""
        ys, xs = torch.meshgrid(torch.arange(h, device=centre.device) + 0.5, torch.arange(w, device=centre.device)
                                + 0.5, indexing="ij")
        d2 = (xs.flatten() - centre[..., :1] * w) ** 2 + (ys.flatten() - centre[..., 1:] * h) ** 2  # (B, Q, N)
        sigma = 2.0 ** torch.arange(self.heads, device=centre.device)                  # (heads,)
        bias = -d2[:, None] / (2 * sigma[:, None, None] ** 2)                            # (B, heads, Q, N)
        return bias.flatten(0, 1).to(centre.dtype)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        mem = self.input_proj(x)                                              # (B, D, h', w')
        b, d, h, w = mem.shape
        memory = mem.flatten(2).transpose(1, 2)                               # (B, N=h'*w', D)
        pos = sincos_2d(h, w, d, x.device, x.dtype)                           # (1, N, D)
        ref = self.anchors.weight.sigmoid().unsqueeze(0).expand(b, -1, -1)           # (B, Q, 4) the box so far
        q = x.new_zeros(b, ref.shape[1], d)                                   # (B, Q, D) content
        outs, boxes, attns = [], [], []
        for layer in self.layers:
            centre = ref[..., :2]                                             # (B, Q, 2) as (x, y)
            query_pos = self.query_pos(sincos_points(centre.flip(-1) * centre.new_tensor([h, w]), d).to(x.dtype))
            q, attn = layer(q, query_pos, memory, pos, self.attention_prior(centre, h, w))
            box = (torch.logit(ref, eps=1e-4) + self.bbox_embed(q)).sigmoid()  # (B, Q, 4)
            outs.append(q)
            boxes.append(box)
            attns.append(attn)
            ref = box.detach()
        logits = self.class_embed(torch.stack(outs, 1))                       # (B, L, Q, K+1)
        boxes = torch.stack(boxes, 1)                                          # (B, L, Q, 4)
        return {"pred_logits": logits[:, -1], "pred_boxes": boxes[:, -1], "layer_logits": logits,
                "layer_boxes": boxes, "cross_attn": torch.stack(attns, 1).unflatten(-1, (h, w))}


class SegFormerHead(nn.Module):
    """(B, dim, h, w) fused map and the input image (B, 3, H, W) -> logits (B, K+1, H, W) (0 = background).
    SegFormer's classifier is one 1x1 conv on its fused map; `refine` 3x3 conv-BN-ReLU blocks before it give each
    cell its neighbours' context (a shape's class is read from its outline, a few cells wide at stride 4), and
    `skip` > 0 adds DeepLabv3+'s low-level path (Chen et al. 2018) with the image itself as the low level: a
    stride-2 3x3 conv of the image (`skip` channels) beside the map upsampled to stride 2, a 3x3 conv, then the
    classifier at stride 2, so object edges are placed at 2 px instead of 4 (benchmarks/NOTES.md, 13b)."""

    def __init__(self, dim: int, num_classes: int, refine: int = 0, skip: int = 0):
        super().__init__()
        self.refine = nn.Sequential(*(conv_bn(dim, dim) for _ in range(refine)))
        self.drop = nn.Dropout2d(0.1)
        self.skip = conv_bn(3, skip, stride=2) if skip else None
        self.reduce = nn.Conv2d(dim, dim // 2, 1) if skip else None
        self.fine = conv_bn(dim // 2 + skip, dim // 2) if skip else None
        self.classify = nn.Conv2d(dim // 2 if skip else dim, num_classes + 1, 1)

    def forward(self, x: torch.Tensor, image: torch.Tensor) -> dict[str, torch.Tensor]:
        x = self.drop(self.refine(x))                                         # (B, dim, h, w)
        if self.skip is not None:
            low = self.skip(image)                                            # (B, skip, H/2, W/2)
            up = F.interpolate(self.reduce(x), size=low.shape[-2:], mode="bilinear", align_corners=False)
            x = self.fine(torch.cat([up, low], 1))                            # (B, dim/2, H/2, W/2)
        logits = self.classify(x)                                             # (B, K+1, h, w) or (H/2, W/2)
        return {"logits": F.interpolate(logits, size=image.shape[-2:], mode="bilinear", align_corners=False)}


def conv_bn(cin: int, cout: int, stride: int = 1) -> nn.Sequential:
    """3x3 conv (no bias), BatchNorm, ReLU."""
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU())
