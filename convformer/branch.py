"""A branch of a ConvFormer: the parts its layout names (conv stages, patchify, grid -> tokens, transformer
blocks, norm, tokens -> grid, refinement, pool), run in one fixed order; its feature taps for timm's
`forward_intermediates`, and pruning after a tap. The layouts themselves are data in `model.LAYOUTS`.
"""
# No `from __future__ import annotations`: torch.fx copies forward's annotations into the code it generates.
import torch
from timm.layers import PatchEmbed
from timm.models import checkpoint_seq
from torch import nn

from .config import ConvFormerConfig
from .layers import NORM_EPS, Block, ConvStages, Pool, ResidualBlock, ToGrid, ToTokens, tokens_to_map

PARTS = ("conv", "proj", "patch", "tokens", "blocks", "norm", "grid", "refine", "pool")  # the order parts run in


def _part(kind: str, cfg: ConvFormerConfig, dim: int, kinds: tuple[str, ...]) -> tuple[nn.Module, int]:
    """Build one part of a branch with parts `kinds` that takes `dim` channels; return it and the channels it
    produces. Only a branch with tokens has a class token; one without (cnn) pools by the mean."""
    D, prefix = cfg.embed_dim, int(cfg.pool == "cls" and "tokens" in kinds)
    if kind == "conv":
        return ConvStages(cfg.in_chans, cfg.conv_widths, cfg.conv_depths, cfg.drop_path_rate), cfg.conv_widths[-1]
    if kind == "proj":
        return nn.Conv2d(dim, D, 1), D
    if kind == "patch":
        return PatchEmbed(cfg.img_size, cfg.patch_size, cfg.in_chans, D, output_fmt="NCHW",
                          strict_img_size=False, dynamic_img_pad=True), D
    if kind == "tokens":
        return ToTokens(D, cfg.grid_size(), cls_token=bool(prefix), sincos=cfg.pos_embed == "sincos"), D
    if kind == "blocks":
        rates = torch.linspace(0, cfg.drop_path_rate, cfg.depth, device="cpu").tolist() if cfg.depth else []
        return nn.Sequential(*[Block(D, cfg.num_heads, cfg.mlp_ratio, cfg.drop_rate, cfg.attn_drop_rate, r)
                               for r in rates]), D
    if kind == "norm":
        return nn.LayerNorm(D, eps=NORM_EPS), D
    if kind == "grid":
        return ToGrid(prefix), D
    if kind == "refine":
        return ResidualBlock(D), D
    if kind == "pool":
        return Pool("cls" if prefix else "avg", prefix), dim
    raise ValueError(f"unknown part {kind!r}")


def branch_taps(kinds: tuple[str, ...], cfg: ConvFormerConfig) -> list[tuple[str, int, int, int]]:
    """A branch's feature taps in running order: (part, index, channels, stride) per conv stage, per
    transformer block (its token grid) and for mid's refined grid."""
    taps = []
    if "conv" in kinds:
        taps += [("conv", i, w, 2 ** (i + 1)) for i, w in enumerate(cfg.conv_widths)]
    stride = cfg.patch_size if "patch" in kinds else cfg.conv_stride
    if "blocks" in kinds:
        taps += [("blocks", j, cfg.embed_dim, stride) for j in range(cfg.depth)]
    if "refine" in kinds:
        taps.append(("refine", 0, cfg.embed_dim, stride))
    return taps


class Branch(nn.Module):
    """The parts its layout names, run in the order of PARTS; absent parts are None. `forward` returns the
    unpooled map; the `pool` part is applied by the model's head."""

    def __init__(self, kinds: tuple[str, ...], cfg: ConvFormerConfig):
        super().__init__()
        dim = cfg.in_chans
        for kind in PARTS:
            module = None
            if kind in kinds:
                module, dim = _part(kind, cfg, dim, kinds)
            setattr(self, kind, module)
        self.prefix = int(cfg.pool == "cls" and "tokens" in kinds)  # a class token before the grid's tokens
        self.row = bool(self.prefix)  # unpooled map: all tokens in one row (else the grid)
        self.out_dim = dim
        self.taps = [t[:2] for t in branch_taps(kinds, cfg)]  # (part, index) per feature tap
        self.grad_checkpointing = False

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, C_in, H, W) -> unpooled (B, C, ., .)
        if self.conv is not None:
            x = self.conv(x)  # (B, C_conv, h, w)
        if self.proj is not None:
            x = self.proj(x)  # (B, D, h, w)
        if self.patch is not None:
            x = self.patch(x)  # (B, D, h, w)
        h, w = x.shape[-2], x.shape[-1]  # remembered so tokens can go back to a (non-square) grid
        if self.tokens is not None:
            x = self.tokens(x)  # (B, P + h * w, D)
            if self.grad_checkpointing and not torch.jit.is_scripting():
                x = checkpoint_seq(self.blocks, x)
            else:
                x = self.blocks(x)
            x = self.norm(x)
            if self.grid is not None:
                x = self.grid(x, h, w)  # (B, D, h, w)
            elif self.row:
                x = tokens_to_map(x, h, w, self.prefix)  # with a class token: (B, D, 1, P + h * w)
            else:
                x = tokens_to_map(x[:, self.prefix:], h, w, 0)  # (B, D, h, w)
        if self.refine is not None:
            x = self.refine(x)  # (B, D, h, w)
        return x

    @torch.jit.ignore
    def forward_intermediates(self, x: torch.Tensor, take: list[int], norm: bool = False,
                              stop_early: bool = False) -> tuple[torch.Tensor, dict[int, torch.Tensor]]:
        """`forward`, also returning the maps at the taps in `take` (indices into `self.taps`); with
        stop_early, it returns after the last of them (the returned map is then where it stopped)."""
        out: dict[int, torch.Tensor] = {}
        last, t = max(take, default=-1), 0
        if self.conv is not None:
            for stage in self.conv.children():
                x = stage(x)
                if t in take:
                    out[t] = x
                t += 1
                if stop_early and t > last:
                    return x, out
        for part in (self.proj, self.patch):
            if part is not None:
                x = part(x)
        h, w = x.shape[-2], x.shape[-1]
        if self.tokens is not None:
            x = self.tokens(x)
            for block in self.blocks:
                x = block(x)
                if t in take:
                    out[t] = tokens_to_map((self.norm(x) if norm else x)[:, self.prefix:], h, w, 0)
                t += 1
                if stop_early and t > last:
                    return self._map(x, h, w), out
            x = self.norm(x)
            x = self.grid(x, h, w) if self.grid is not None else self._map(x, h, w)
        if self.refine is not None:
            x = self.refine(x)
            if t in take:
                out[t] = x
        return x, out

    def _map(self, x: torch.Tensor, h: int, w: int) -> torch.Tensor:
        return tokens_to_map(x, h, w, self.prefix) if self.row else tokens_to_map(x[:, self.prefix:], h, w, 0)

    def prune(self, last: int, prune_norm: bool = False) -> None:
        """Drop every part after tap `last` (and the final norm with prune_norm, when the tap is a block)."""
        kind, index = self.taps[last]
        after = PARTS[PARTS.index(kind) + 1:-1]  # the pool part stays
        if kind == "conv":
            for name in [n for n, _ in self.conv.named_children()][index + 1:]:
                delattr(self.conv, name)
        if kind == "blocks":
            self.blocks = self.blocks[:index + 1]
            after = ("grid", "refine")
            if prune_norm:
                self.norm = nn.Identity()
        for part in after:
            setattr(self, part, None)
        self.taps = self.taps[:last + 1]
        if kind == "conv":
            self.out_dim = self.conv[-1][0].conv.out_channels
