"""ConvFormer: hybrid conv + transformer classifiers where the fusion stage is data.

`LAYOUTS` maps each fusion stage to its branches, and each branch to the parts it runs in order. One
builder reads it (as timm's CoAtNet reads its stage layout). Shapes for a 224 x 224 RGB input with
conv_widths of 4 stages (stride 16), embed_dim D and patch 16:

  early  Xiao et al. 2021, "Early Convolutions Help Transformers See Better":
         conv (B,C4,14,14) -> proj 1x1 (B,D,14,14) -> tokens (B,P+196,D) -> blocks -> norm -> pool (B,D)
  mid    CoAtNet / MobileViT style: convs for local features, attention on the coarse grid, a conv refines:
         conv (B,C4,14,14) -> proj (B,D,14,14) -> tokens (B,196,D) -> blocks -> norm -> grid (B,D,14,14)
         -> refine 3x3 (B,D,14,14) -> pool (B,D)
  late   two full branches over the same image, merged before the classifier:
         cnn: conv (B,C4,14,14) -> pool (B,C4);  vit: patch (B,D,14,14) -> tokens -> blocks -> norm -> pool (B,D)
         merge (concat: (B,C4+D); add / gate: (B,D))
  cnn    conv -> pool                               (baseline)
  vit    patch -> tokens -> blocks -> norm -> pool  (baseline; DeiT-Ti when configured so)
Every model ends in head: Linear (B, F) -> (B, num_classes).
"""
from __future__ import annotations

from typing import Any

import torch
from timm.layers import PatchEmbed, trunc_normal_
from torch import nn

from .config import ConvFormerConfig
from .layers import Block, ConvStages, Merge, Pool, ResidualBlock, ToGrid, ToTokens

TOKENS = ("tokens", "blocks", "norm")
LAYOUTS: dict[str, dict[str, tuple[str, ...]]] = {
    "early": {"early": ("conv", "proj", *TOKENS, "pool")},
    "mid": {"mid": ("conv", "proj", *TOKENS, "grid", "refine", "pool")},
    "late": {"cnn": ("conv", "pool"), "vit": ("patch", *TOKENS, "pool")},
    "cnn": {"cnn": ("conv", "pool")},
    "vit": {"vit": ("patch", *TOKENS, "pool")},
}


def _part(kind: str, cfg: ConvFormerConfig, dim: int) -> tuple[nn.Module, int]:
    """Build one part that takes `dim` channels; return it and the channels it produces."""
    D, prefix = cfg.embed_dim, int(cfg.pool == "cls")
    if kind == "conv":
        return ConvStages(cfg.in_chans, cfg.conv_widths, cfg.conv_depths, cfg.drop_path_rate), cfg.conv_widths[-1]
    if kind == "proj":
        return nn.Conv2d(dim, D, 1), D
    if kind == "patch":
        return PatchEmbed(cfg.img_size, cfg.patch_size, cfg.in_chans, D, output_fmt="NCHW",
                          strict_img_size=False, dynamic_img_pad=True), D
    if kind == "tokens":
        return ToTokens(D, cfg.grid_size(), cls_token=bool(prefix)), D
    if kind == "blocks":
        rates = torch.linspace(0, cfg.drop_path_rate, cfg.depth).tolist() if cfg.depth else []
        return nn.Sequential(*[Block(D, cfg.num_heads, cfg.mlp_ratio, cfg.drop_rate, cfg.attn_drop_rate, r)
                               for r in rates]), D
    if kind == "norm":
        return nn.LayerNorm(D), D
    if kind == "grid":
        return ToGrid(prefix), D
    if kind == "refine":
        return ResidualBlock(D), D
    if kind == "pool":
        return Pool(cfg.pool, prefix), dim
    raise ValueError(f"unknown part {kind!r}")


class Branch(nn.ModuleDict):
    """Parts run in order; the last one pools to (B, out_dim)."""

    def __init__(self, kinds: tuple[str, ...], cfg: ConvFormerConfig):
        super().__init__()
        dim = cfg.in_chans
        for kind in kinds:
            self[kind], dim = _part(kind, cfg, dim)
        self.out_dim = dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        hw = x.shape[-2:]
        for part in self.values():
            if x.ndim == 4:
                hw = x.shape[-2:]  # remembered so tokens can go back to a (non-square) grid
            x = part(x, hw) if isinstance(part, ToGrid) else part(x)
        return x


class ConvFormer(nn.Module):
    """(B, in_chans, H, W) -> logits (B, num_classes). Any H, W >= config.min_size."""

    def __init__(self, config: ConvFormerConfig | None = None, **overrides: Any):
        super().__init__()
        cfg = (config or ConvFormerConfig()).replace(**overrides) if overrides else (config or ConvFormerConfig())
        self.config = cfg
        self.num_classes = cfg.num_classes
        self.pretrained_cfg = cfg.data_config()  # timm's preprocessing metadata
        self.branches = nn.ModuleDict({name: Branch(kinds, cfg) for name, kinds in LAYOUTS[cfg.fusion].items()})
        dims = tuple(b.out_dim for b in self.branches.values())
        self.merge = Merge(dims, cfg.merge, cfg.embed_dim) if len(dims) > 1 else None
        self.num_features = self.merge.out_dim if self.merge is not None else dims[0]
        self.head_drop = nn.Dropout(cfg.drop_rate)
        self.head = nn.Linear(self.num_features, cfg.num_classes)
        self.apply(_init_weights)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) -> pooled, merged features (B, num_features)."""
        feats = [branch(x) for branch in self.branches.values()]
        return self.merge(feats) if self.merge is not None else feats[0]

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        x = self.head_drop(x)
        return x if pre_logits else self.head(x)  # (B, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))

    # timm's classifier interface
    def get_classifier(self) -> nn.Module:
        return self.head

    def reset_classifier(self, num_classes: int) -> None:
        self.config = self.config.replace(num_classes=num_classes)
        self.pretrained_cfg = {**self.pretrained_cfg, "num_classes": num_classes}
        self.num_classes = num_classes
        self.head = nn.Linear(self.num_features, num_classes)
        _init_weights(self.head)


def _init_weights(m: nn.Module) -> None:
    if isinstance(m, nn.Linear):
        trunc_normal_(m.weight, std=0.02)
        if m.bias is not None:
            nn.init.zeros_(m.bias)


def build_model(config: ConvFormerConfig | None = None, **overrides: Any) -> ConvFormer:
    """Build a ConvFormer from a config, with field overrides (validated; bad values raise ValueError)."""
    return ConvFormer(config, **overrides)
