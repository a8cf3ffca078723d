"""Pure picture helpers: arrays or tensors in, numpy or PIL out. No figures, no model calls.

Attention rollout follows Abnar & Zuidema 2020, "Quantifying Attention Flow in Transformers";
heatmap overlays follow pytorch-grad-cam's `show_cam_on_image`, with matplotlib colormaps as lookup tables.

The rollout's matrix products run in torch, not numpy: numpy's OpenBLAS keeps a thread pool of its own that
spins after each product and, on a small CPU, halves the speed of the next torch forward (benchmarks/NOTES.md).
"""
from __future__ import annotations

import functools
from collections.abc import Sequence

import numpy as np
import torch
from matplotlib import colormaps
from PIL import Image


def to_numpy(x) -> np.ndarray:
    """A tensor (any device, any float dtype) or array as a float32 numpy array."""
    if hasattr(x, "detach"):
        x = x.detach().float().cpu().numpy()
    return np.asarray(x, dtype=np.float32)


def normalize(x) -> np.ndarray:
    """Min-max scale to [0, 1]; a constant map becomes zeros."""
    x = to_numpy(x)
    lo, hi = float(x.min()), float(x.max())
    return (x - lo) / (hi - lo) if hi > lo else np.zeros_like(x)


def tokens_to_grid(values, grid: tuple[int, int], prefix: int = 0) -> np.ndarray:
    """Per-token values (..., prefix + h * w) -> (..., h, w), dropping the prefix (class) tokens."""
    values = to_numpy(values)
    h, w = grid
    if values.shape[-1] != prefix + h * w:
        raise ValueError(f"{values.shape[-1]} tokens do not match a {h} x {w} grid with {prefix} prefix token(s)")
    return values[..., prefix:].reshape(*values.shape[:-1], h, w)


def fuse_heads(attn, head_fusion: str = "mean") -> np.ndarray:
    """(heads, N, N) -> (N, N) by mean, max or min over heads."""
    ops = {"mean": np.mean, "max": np.max, "min": np.min}
    if head_fusion not in ops:
        raise ValueError(f"head_fusion={head_fusion!r}; expected one of {sorted(ops)}")
    return ops[head_fusion](to_numpy(attn), axis=0)


def rollout(attentions: Sequence, head_fusion: str = "mean", discard_ratio: float = 0.0,
            prefix: int = 1) -> np.ndarray:
    """Attention rollout over blocks, each (heads, N, N) for one image, first block first -> (N, N).

    Per block: fuse heads, zero the weakest `discard_ratio` of the weights (never those to prefix tokens),
    add the identity for the residual path, renormalise rows, and multiply onto the product so far.
    """
    if not 0.0 <= discard_ratio < 1.0:
        raise ValueError(f"discard_ratio={discard_ratio}; expected a number in [0, 1)")
    if not len(attentions):
        raise ValueError("rollout needs at least one attention map")
    n = to_numpy(attentions[0]).shape[-1]
    eye = torch.eye(n, dtype=torch.float64)
    result = eye
    for attn in attentions:
        a = fuse_heads(attn, head_fusion).astype(np.float64)
        if discard_ratio > 0:
            patch = a[:, prefix:]
            k = int(patch.size * discard_ratio)
            if k:
                cut = np.partition(patch.ravel(), k - 1)[k - 1]
                a[:, prefix:] = np.where(patch <= cut, 0.0, patch)
        a = 0.5 * torch.from_numpy(a) + 0.5 * eye
        result = (a / a.sum(dim=-1, keepdim=True)) @ result
    return result.float().numpy()


def rollout_map(attentions: Sequence, grid: tuple[int, int], prefix: int, head_fusion: str = "mean",
                discard_ratio: float = 0.0) -> np.ndarray:
    """Rollout as an (h, w) map in [0, 1]: the class token's row, or without one the mean over all rows."""
    joint = rollout(attentions, head_fusion, discard_ratio, prefix)
    relevance = joint[0] if prefix else joint.mean(axis=0)
    return normalize(tokens_to_grid(relevance, grid, prefix))


def query_map(attn, query: int, grid: tuple[int, int], prefix: int, head: int | None = None) -> np.ndarray:
    """Where patch `query` (row-major index into the h x w grid) attends: (heads, N, N) -> (h, w)."""
    a = to_numpy(attn)
    row = a[:, prefix + query] if head is None else a[head:head + 1, prefix + query]
    return tokens_to_grid(row.mean(axis=0), grid, prefix)


def point_to_query(x: float, y: float, image_size: tuple[int, int], grid: tuple[int, int]) -> int:
    """Pixel (x, y) on an image of (width, height) -> row-major index of the patch under it."""
    (width, height), (h, w) = image_size, grid
    col = min(max(int(x / width * w), 0), w - 1)
    row = min(max(int(y / height * h), 0), h - 1)
    return row * w + col


def head_maps(attn, grid: tuple[int, int], prefix: int) -> np.ndarray:
    """Per head, the attention each patch receives (from the class token, else averaged over queries):
    (heads, N, N) -> (heads, h, w)."""
    a = to_numpy(attn)
    received = a[:, 0] if prefix else a.mean(axis=1)
    return tokens_to_grid(received, grid, prefix)


@functools.cache
def colour_table(cmap: str) -> np.ndarray:
    """A matplotlib colormap as a (256, 3) uint8 lookup table (built once per name, read-only)."""
    table = (colormaps[cmap](np.linspace(0, 1, 256))[:, :3] * 255).astype(np.uint8)
    table.flags.writeable = False
    return table


def heatmap(values, cmap: str = "inferno") -> np.ndarray:
    """A 2-D map -> RGB uint8 (h, w, 3) through a matplotlib colormap (values min-max scaled)."""
    return colour_table(cmap)[(normalize(values) * 255).astype(np.uint8)]


def overlay(image: Image.Image, values, alpha: float = 0.5, cmap: str = "jet") -> Image.Image:
    """Blend a 2-D map, resized smoothly to the image, onto the image (RGB)."""
    image = image.convert("RGB")
    small = Image.fromarray(normalize(values).astype(np.float32), mode="F")
    big = np.asarray(small.resize(image.size, Image.Resampling.BILINEAR)).clip(0, 1)
    return Image.blend(image, Image.fromarray(colour_table(cmap)[(big * 255).astype(np.uint8)]), alpha)


def tile(maps, cols: int | None = None, cell: int = 64, cmap: str = "viridis", gap: int = 2) -> Image.Image:
    """(n, h, w) maps, each scaled on its own, -> one image of n cells in a grid (nearest-neighbour)."""
    maps = to_numpy(maps)
    n = len(maps)
    cols = cols or int(np.ceil(np.sqrt(n)))
    rows = int(np.ceil(n / cols))
    h, w = maps.shape[-2:]
    ch, cw = (cell, max(1, round(cell * w / h))) if h >= w else (max(1, round(cell * h / w)), cell)
    canvas = Image.new("RGB", (cols * (cw + gap) - gap, rows * (ch + gap) - gap), "white")
    for i, m in enumerate(maps):
        picture = Image.fromarray(heatmap(m, cmap)).resize((cw, ch), Image.Resampling.NEAREST)
        canvas.paste(picture, ((i % cols) * (cw + gap), (i // cols) * (ch + gap)))
    return canvas


def top_channels(act, k: int = 16) -> np.ndarray:
    """Indices of the k channels of a (C, h, w) activation with the highest mean, strongest first."""
    means = to_numpy(act).mean(axis=(1, 2))
    return np.argsort(-means, kind="stable")[:k]



def top_activations(activations: dict, k: int = 16) -> dict:
    """{stage: (B, C, h, w) tensor} -> {stage: (its k most active channels (k, h, w), their indices, C)} for the
    first image: what the conv-activation views draw."""
    out = {}
    for stage, act in activations.items():
        a = to_numpy(act[0])
        top = top_channels(a, k)
        out[stage] = (a[top], top, a.shape[0])
    return out

def channel_grid(act, k: int = 16, cell: int = 64, cmap: str = "viridis") -> Image.Image:
    """The k most active channels of a conv activation (C, h, w) as a grid of heatmaps."""
    act = to_numpy(act)
    return tile(act[top_channels(act, k)], cell=cell, cmap=cmap)
