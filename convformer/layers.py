"""Building blocks shared by every fusion stage: conv stages, attention, transformer blocks, and the
two modules that cross the fusion boundary (grid -> tokens, tokens -> grid).

Tokens are (B, N, C) with N = prefix + h * w; grids are (B, C, h, w). Every forward is TorchScript- and
torch.fx-friendly: no type or ndim checks, sizes passed as ints, optional parts tested with `is None`.
"""
from __future__ import annotations

from typing import List

import torch
import torch.nn.functional as F
from timm.layers import (ConvNormAct, DropPath, Mlp, build_sincos2d_pos_embed, resample_abs_pos_embed,
                         trunc_normal_)
from torch import nn


class ResidualBlock(nn.Module):
    """ResNet basic block: two 3x3 conv-BN, identity shortcut (He et al. 2016)."""

    def __init__(self, dim: int, drop_path: float = 0.0):
        super().__init__()
        self.conv1 = ConvNormAct(dim, dim, 3)
        self.conv2 = ConvNormAct(dim, dim, 3, apply_act=False)
        self.drop_path = DropPath(drop_path) if drop_path else nn.Identity()
        self.act = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, C, h, w) -> (B, C, h, w)
        return self.act(x + self.drop_path(self.conv2(self.conv1(x))))


class ConvStage(nn.Sequential):
    """A stride-2 3x3 conv that halves H and W and sets the width, then `depth` residual blocks."""

    def __init__(self, in_dim: int, dim: int, depth: int, drop_path: float = 0.0):
        super().__init__(ConvNormAct(in_dim, dim, 3, stride=2),
                         *[ResidualBlock(dim, drop_path) for _ in range(depth)])


class ConvStages(nn.Sequential):
    """One ConvStage per width: (B, C_in, H, W) -> (B, widths[-1], ceil(H / 2^n), ceil(W / 2^n))."""

    def __init__(self, in_chans: int, widths: tuple[int, ...], depths: tuple[int, ...], drop_path: float = 0.0):
        dims = (in_chans, *widths)
        super().__init__()
        for i, depth in enumerate(depths):
            self.add_module(f"stage{i}", ConvStage(dims[i], dims[i + 1], depth, drop_path))


class Attention(nn.Module):
    """Multi-head self-attention. Fused SDPA by default; with `fused = False` the explicit softmax path
    runs and the probabilities (B, heads, N, N) pass through `self.probs`, a hook point for inspection."""

    def __init__(self, dim: int, num_heads: int, attn_drop: float = 0.0, proj_drop: float = 0.0):
        super().__init__()
        self.num_heads, self.head_dim = num_heads, dim // num_heads
        self.scale = self.head_dim ** -0.5
        self.fused = True
        self.qkv = nn.Linear(dim, dim * 3)
        self.attn_drop = nn.Dropout(attn_drop)
        self.probs = nn.Identity()
        self.proj = nn.Linear(dim, dim)
        self.proj_drop = nn.Dropout(proj_drop)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, N, C = x.shape
        qkv = self.qkv(x).reshape(B, N, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)  # (B, nh, N, hs) each
        if self.fused:
            x = F.scaled_dot_product_attention(q, k, v, dropout_p=self.attn_drop.p if self.training else 0.0)
        else:
            attn = self.probs((q * self.scale @ k.transpose(-2, -1)).softmax(dim=-1))  # (B, nh, N, N)
            x = self.attn_drop(attn) @ v
        x = x.transpose(1, 2).reshape(B, N, C)  # (B, N, C)
        return self.proj_drop(self.proj(x))


NORM_EPS = 1e-6  # LayerNorm epsilon of ViT / DeiT (timm's vision_transformer), so DeiT weights give DeiT's logits


class Block(nn.Module):
    """Pre-norm transformer block: x + attn(norm(x)), then x + mlp(norm(x)) (Vaswani et al., ViT)."""

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float = 4.0, drop: float = 0.0,
                 attn_drop: float = 0.0, drop_path: float = 0.0):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=NORM_EPS)
        self.attn = Attention(dim, num_heads, attn_drop, drop)
        self.norm2 = nn.LayerNorm(dim, eps=NORM_EPS)
        self.mlp = Mlp(dim, int(dim * mlp_ratio), drop=drop)
        self.drop_path = DropPath(drop_path) if drop_path else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, N, C) -> (B, N, C)
        x = x + self.drop_path(self.attn(self.norm1(x)))
        return x + self.drop_path(self.mlp(self.norm2(x)))


class ToTokens(nn.Module):
    """Grid -> tokens: (B, C, h, w) -> (B, prefix + h * w, C), with an optional class token and positional
    embeddings that are resampled when the grid differs from the configured one: learned, or with
    `sincos` a fixed 2-D sin-cos table (a buffer; the class token's row is zero), which a ViT trained from
    scratch on little data learns faster with (Beyer et al. 2022, "Better plain ViT baselines")."""

    def __init__(self, dim: int, grid: tuple[int, int], cls_token: bool, sincos: bool = False):
        super().__init__()
        self.grid = grid
        self.prefix = int(cls_token)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim)) if cls_token else None
        if sincos:
            table = build_sincos2d_pos_embed(list(grid), dim).reshape(1, grid[0] * grid[1], dim)
            self.register_buffer("pos_embed", F.pad(table, (0, 0, self.prefix, 0)))  # (1, prefix + h * w, dim)
        else:
            self.pos_embed = nn.Parameter(torch.zeros(1, self.prefix + grid[0] * grid[1], dim))
            trunc_normal_(self.pos_embed, std=0.02)
        if self.cls_token is not None:
            nn.init.normal_(self.cls_token, std=1e-6)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2], x.shape[-1]
        x = x.flatten(2).transpose(1, 2)  # (B, h * w, C)
        # timm's resampler returns the table itself when the grid is the configured one
        pos = resample_abs_pos_embed(self.pos_embed, [h, w], [self.grid[0], self.grid[1]],
                                     num_prefix_tokens=self.prefix)
        if self.cls_token is not None:
            x = torch.cat([self.cls_token.expand(x.shape[0], -1, -1), x], dim=1)  # (B, 1 + h * w, C)
        return x + pos


class ToGrid(nn.Module):
    """Tokens -> grid: drop the prefix tokens, (B, prefix + h * w, C) -> (B, C, h, w)."""

    def __init__(self, prefix: int = 0):
        super().__init__()
        self.prefix = prefix

    def forward(self, x: torch.Tensor, h: int, w: int) -> torch.Tensor:
        return x[:, self.prefix:].transpose(1, 2).reshape(x.shape[0], -1, h, w)


def tokens_to_map(x: torch.Tensor, h: int, w: int, prefix: int) -> torch.Tensor:
    """The unpooled features of a branch that ends in tokens, as a (B, C, ., .) map: the grid (B, C, h, w)
    when there is no prefix token, else every token in one row (B, C, 1, prefix + h * w), class token first
    (a class token has no place on the grid)."""
    if prefix:
        return x.transpose(1, 2).unsqueeze(2)
    return x.transpose(1, 2).reshape(x.shape[0], -1, h, w)


class Pool(nn.Module):
    """A branch's unpooled map (B, C, h, w) -> (B, C): the class token ("cls", position 0 of a token row), the
    mean over positions after the prefix ("avg"), or nothing ("": the map itself)."""

    def __init__(self, mode: str = "avg", prefix: int = 0):
        super().__init__()
        self.mode, self.prefix = mode, prefix

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.mode == "":
            return x
        x = x.flatten(2)  # (B, C, positions)
        if self.mode == "cls":
            return x[:, :, 0]
        return x[:, :, self.prefix:].mean(dim=2)


class Merge(nn.Module):
    """Late fusion: merge per-branch features (B, C_i) into one vector.
    concat: [a, b]; add: Pa + Pb; gate: g * Pa + (1 - g) * Pb with g = sigmoid(W[Pa, Pb]) per channel."""

    def __init__(self, dims: tuple[int, ...], mode: str, out_dim: int):
        super().__init__()
        self.mode = mode
        if mode == "concat":
            self.out_dim, self.proj = sum(dims), nn.ModuleList(nn.Identity() for _ in dims)
        else:
            self.out_dim, self.proj = out_dim, nn.ModuleList(nn.Linear(d, out_dim) for d in dims)
        self.gate = nn.Linear(out_dim * len(dims), out_dim) if mode == "gate" else None

    def forward(self, feats: List[torch.Tensor]) -> torch.Tensor:
        projected: List[torch.Tensor] = []
        for i, proj in enumerate(self.proj):
            projected.append(proj(feats[i]))
        if self.gate is not None:
            g = torch.sigmoid(self.gate(torch.cat(projected, dim=1)))  # (B, out_dim)
            return g * projected[0] + (1 - g) * projected[1]
        if self.mode == "concat":
            return torch.cat(projected, dim=1)
        return torch.stack(projected).sum(0)
