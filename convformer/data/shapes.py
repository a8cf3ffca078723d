"""Shapes: a built-in, procedurally generated image classification dataset (no download).

Every image shows one object from ``CLASSES`` (circle, square, triangle, ...) with a random
colour, size (30-65 % of the short side), rotation and position, on a cluttered background:
a low-contrast gradient, optional stripes, blotchy low-frequency noise, a few small distractor
strokes and blobs that are not any of the classes, and fine pixel noise over everything.
Because the object can be anywhere, a classifier has to find it first, which makes the
dataset useful for looking at where a model's attention goes.

Images are deterministic: ``render(index, split, img_size, seed)`` seeds its own
``numpy.random.Generator`` from ``SeedSequence([seed, split_id, index])``, so the result does
not depend on call order, and the splits never share an image. The scene is drawn in
fractions of the image size, so one index gives the same scene at any resolution or aspect.
Labels are balanced: ``label = index % len(CLASSES)``.
"""

from __future__ import annotations

import colorsys
import operator
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont

CLASSES: tuple[str, ...] = (
    "circle", "square", "triangle", "star", "cross",
    "ring", "heart", "arrow", "hexagon", "crescent",
)
SPLITS: dict[str, int] = {"train": 0, "val": 1, "test": 2}
MIN_SIZE, MAX_SIZE = 32, 4096
LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)  # RGB -> luma (ITU-R BT.601)


def _circle(r: float = 1.0, cx: float = 0.0, cy: float = 0.0, n: int = 64) -> np.ndarray:
    t = np.linspace(0, 2 * np.pi, n, endpoint=False)
    return np.stack([cx + r * np.cos(t), cy + r * np.sin(t)], 1)


def _regular(n: int, r_out: float = 1.0, r_in: float | None = None) -> np.ndarray:
    """Regular polygon (or star when ``r_in`` is given), first vertex pointing up."""
    k = 2 * n if r_in is not None else n
    t = -np.pi / 2 + np.arange(k) * 2 * np.pi / k
    r = np.where(np.arange(k) % 2, r_in, r_out) if r_in is not None else np.full(k, r_out)
    return np.stack([r * np.cos(t), r * np.sin(t)], 1)


def _heart() -> np.ndarray:
    t = np.linspace(0, 2 * np.pi, 64, endpoint=False)
    x = 16 * np.sin(t) ** 3
    y = -(13 * np.cos(t) - 5 * np.cos(2 * t) - 2 * np.cos(3 * t) - np.cos(4 * t))
    pts = np.stack([x, y + 2.5], 1)
    return pts / np.abs(pts).max()


_ARROW = np.array([(-1, -.2), (.15, -.2), (.15, -.55), (1, 0), (.15, .55), (.15, .2), (-1, .2)])
_CROSS = np.array([(.28, .28), (.28, 1), (-.28, 1), (-.28, .28), (-1, .28), (-1, -.28),
                   (-.28, -.28), (-.28, -1), (.28, -1), (.28, -.28), (1, -.28), (1, .28)])

# Each shape is a list of (polygon in unit coordinates, fill); fill 0 cuts a hole.
# The first polygon bounds the whole shape.
OUTLINES: dict[str, list[tuple[np.ndarray, int]]] = {
    "circle": [(_circle(), 255)],
    "square": [(np.array([(-1, -1), (1, -1), (1, 1), (-1, 1)]) * 0.8, 255)],
    "triangle": [(_regular(3), 255)],
    "star": [(_regular(5, 1.0, 0.42), 255)],
    "cross": [(_CROSS / 1.04, 255)],
    "ring": [(_circle(), 255), (_circle(0.55), 0)],
    "heart": [(_heart(), 255)],
    "arrow": [(_ARROW, 255)],
    "hexagon": [(_regular(6), 255)],
    "crescent": [(_circle(), 255), (_circle(0.8, 0.5, 0.0), 0)],
}
assert tuple(OUTLINES) == CLASSES


def check_size(img_size: int | Sequence[int]) -> tuple[int, int]:
    """Return (H, W) from an int or an (H, W) pair, validated."""
    if isinstance(img_size, (int, np.integer)) and not isinstance(img_size, bool):
        hw = (int(img_size), int(img_size))
    elif isinstance(img_size, Sequence) and len(img_size) == 2 and all(
            isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in img_size):
        hw = (int(img_size[0]), int(img_size[1]))
    else:
        raise ValueError(f"img_size must be an int or an (H, W) pair of ints, got {img_size!r}")
    if not all(MIN_SIZE <= v <= MAX_SIZE for v in hw):
        raise ValueError(f"img_size must be between {MIN_SIZE} and {MAX_SIZE} px, got {img_size!r}")
    return hw


def check_split(split: str) -> int:
    if split not in SPLITS:
        raise ValueError(f"split must be one of {sorted(SPLITS)}, got {split!r}")
    return SPLITS[split]


def check_nonneg(name: str, value: int) -> int:
    try:
        value = operator.index(value)
    except TypeError:
        raise ValueError(f"{name} must be an int, got {value!r}") from None
    if value < 0:
        raise ValueError(f"{name} must be >= 0, got {value}")
    return value


def background(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """Low-contrast gradient + optional stripes + blotches, float32 (H, W, 3) in [0, 1]."""
    s = min(h, w)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32) / s
    bg = np.broadcast_to(rng.uniform(0.2, 0.8, 3).astype(np.float32), (h, w, 3)).copy()
    a = rng.uniform(0, 2 * np.pi)
    proj = np.cos(a) * xx + np.sin(a) * yy
    proj = (proj - proj.mean()) / max(float(np.ptp(proj)), 1e-6)
    bg += proj[..., None] * (rng.uniform(0.0, 0.25) * rng.uniform(-1, 1, 3)).astype(np.float32)
    stripes, a, freq, amp = rng.random() < 0.5, rng.uniform(0, np.pi), rng.uniform(3, 10), rng.uniform(.03, .08)
    if stripes:
        wave = np.sin(2 * np.pi * freq * (np.cos(a) * xx + np.sin(a) * yy))
        bg += wave[..., None] * (amp * rng.uniform(-1, 1, 3)).astype(np.float32)
    blotch = rng.uniform(0, 255, (4, 4, 3)).astype(np.uint8)
    blotch_amp = rng.uniform(0.04, 0.1)
    up = np.asarray(Image.fromarray(blotch).resize((w, h), Image.BICUBIC), dtype=np.float32)
    bg += (up / 255 - 0.5) * blotch_amp
    return np.clip(bg, 0, 1)


def distractors(rng: np.random.Generator, img: Image.Image, base: np.ndarray) -> None:
    """Draw a few small strokes, arcs and blobs (none of them a class) onto ``img`` in place."""
    w, h = img.size
    s = min(h, w)
    draw = ImageDraw.Draw(img)
    lw = max(1, round(s * 0.025))
    for _ in range(rng.integers(3, 7)):
        kind = rng.integers(3)
        colour = 0.5 * base + 0.5 * rng.uniform(0, 1, 3)
        fill = tuple(int(v) for v in np.clip(colour * 255, 0, 255))
        cx, cy = rng.uniform(0, 1) * w, rng.uniform(0, 1) * h
        if kind == 0:  # short polyline stroke
            steps = rng.uniform(-0.15, 0.15, (int(rng.integers(1, 3)), 2)) * s
            pts = np.cumsum(np.vstack([[cx, cy], steps]), 0)
            draw.line([tuple(p) for p in pts], fill=fill, width=lw)
        elif kind == 1:  # small blob
            rx, ry = rng.uniform(0.02, 0.06, 2) * s
            draw.ellipse([cx - rx, cy - ry, cx + rx, cy + ry], fill=fill)
        else:  # open arc
            r = rng.uniform(0.04, 0.1) * s
            start = rng.uniform(0, 360)
            draw.arc([cx - r, cy - r, cx + r, cy + r], start, start + rng.uniform(60, 200), fill=fill, width=lw)


def _object_mask(rng: np.random.Generator, label: int, h: int, w: int) -> np.ndarray:
    """Antialiased (drawn at 2x) mask of the rotated, scaled, placed object, float32 (H, W)."""
    s = min(h, w)
    radius = rng.uniform(0.30, 0.65) * s / 2
    a = rng.uniform(0, 2 * np.pi)
    rot = np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
    polys = [(pts @ rot.T * radius, fill) for pts, fill in OUTLINES[CLASSES[label]]]
    lo, hi = polys[0][0].min(0), polys[0][0].max(0)
    slack = 0.1 * (hi - lo)  # up to 10 % of the object's extent may fall outside
    u = rng.uniform(0, 1, 2)
    low = -lo - slack
    high = np.array([w, h]) - hi + slack
    centre = low + u * np.maximum(high - low, 0)
    mask = Image.new("L", (2 * w, 2 * h), 0)
    draw = ImageDraw.Draw(mask)
    for pts, fill in polys:
        draw.polygon([tuple(p) for p in (pts + centre) * 2], fill=fill)
    return np.asarray(mask.reduce(2), dtype=np.float32) / 255


def contrasting(rng: np.random.Generator, bg_luma: float) -> np.ndarray:
    """A random colour whose luminance differs from ``bg_luma`` by at least 0.3."""
    rgb = np.array(colorsys.hsv_to_rgb(rng.uniform(), rng.uniform(0.4, 1), rng.uniform(0.5, 1)))
    luma = float(rgb @ LUMA)
    gap = 0.3 + rng.uniform(0, 0.15)
    if bg_luma < 0.5:
        target = min(1.0, bg_luma + gap)
        if luma < target:
            rgb = rgb + (1 - rgb) * (target - luma) / max(1 - luma, 1e-6)
    else:
        target = max(0.0, bg_luma - gap)
        if luma > target:
            rgb = rgb * target / luma
    return rgb.astype(np.float32)


def render_with_mask(index: int, split: str, img_size: int | Sequence[int],
                     seed: int = 0) -> tuple[Image.Image, int, np.ndarray]:
    """Like ``render`` but also return the object's soft mask, float32 (H, W) in [0, 1].

    The mask says where the object is, e.g. to score whether attention lands on it.
    """
    index, seed = check_nonneg("index", index), check_nonneg("seed", seed)
    h, w = check_size(img_size)
    rng = np.random.default_rng(np.random.SeedSequence([seed, check_split(split), index]))
    label = index % len(CLASSES)
    bg = background(rng, h, w)
    base = bg.mean((0, 1))
    canvas = Image.fromarray((bg * 255).astype(np.uint8))
    distractors(rng, canvas, base)
    bg = np.asarray(canvas, dtype=np.float32) / 255
    mask = _object_mask(rng, label, h, w)
    bg_luma = float((bg @ LUMA * mask).sum() / max(float(mask.sum()), 1e-6))
    colour = contrasting(rng, bg_luma)
    noise_amp = rng.uniform(0.01, 0.04)
    m = mask[..., None]
    out = bg * (1 - m) + colour * m
    out += rng.standard_normal((h, w, 3), dtype=np.float32) * noise_amp
    img = Image.fromarray((np.clip(out, 0, 1) * 255 + 0.5).astype(np.uint8))
    return img, label, mask


def render(index: int, split: str, img_size: int | Sequence[int],
           seed: int = 0) -> tuple[Image.Image, int]:
    """Render image ``index`` of ``split``; returns (RGB image of size (H, W), label).

    ``img_size`` is an int or (H, W), each >= 32. Same arguments -> identical pixels.
    """
    img, label, _ = render_with_mask(index, split, img_size, seed)
    return img, label


class ShapesDataset(torch.utils.data.Dataset):
    """The shapes dataset as a torch Dataset: item i is ``render(i, split, img_size, seed)``.

    ``classes``, ``class_to_idx`` and ``targets`` mirror torchvision's ImageFolder. With
    ``cache=True`` rendered images are kept as uint8 arrays (per process, so per DataLoader
    worker) and later epochs skip rendering.
    """

    def __init__(self, split: str = "train", size: int = 2000, img_size: int | Sequence[int] = 64,
                 seed: int = 0, transform: Callable[[Image.Image], Any] | None = None,
                 cache: bool = False) -> None:
        check_split(split)
        if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or size < 1:
            raise ValueError(f"size must be an int >= 1, got {size!r}")
        self.split, self.size, self.seed = split, int(size), check_nonneg("seed", seed)
        self.img_size = check_size(img_size)
        self.transform = transform
        self.classes: list[str] = list(CLASSES)
        self.class_to_idx: dict[str, int] = {c: i for i, c in enumerate(CLASSES)}
        self.targets: list[int] = [i % len(CLASSES) for i in range(self.size)]
        self._cache: dict[int, np.ndarray] | None = {} if cache else None

    def __len__(self) -> int:
        return self.size

    def __getitem__(self, idx: int) -> tuple[Any, int]:
        idx = operator.index(idx)
        if idx < 0:
            idx += self.size
        if not 0 <= idx < self.size:
            raise IndexError(f"index {idx} out of range for ShapesDataset of size {self.size}")
        if self._cache is not None and idx in self._cache:
            img = Image.fromarray(self._cache[idx])
        else:
            img, _ = render(idx, self.split, self.img_size, self.seed)
            if self._cache is not None:
                self._cache[idx] = np.asarray(img)
        return (self.transform(img) if self.transform else img), self.targets[idx]


def write_samples(folder: str | Path, per_class: int = 4, img_size: int | Sequence[int] = 96,
                  split: str = "test", seed: int = 0) -> list[Path]:
    """Write ``per_class`` PNGs per class as ``folder/<class>/<index>.png`` (an image folder)."""
    if isinstance(per_class, bool) or not isinstance(per_class, int) or per_class < 1:
        raise ValueError(f"per_class must be an int >= 1, got {per_class!r}")
    check_split(split)
    check_size(img_size)
    paths = []
    for label, name in enumerate(CLASSES):
        (Path(folder) / name).mkdir(parents=True, exist_ok=True)
        for k in range(per_class):
            index = label + k * len(CLASSES)
            img, _ = render(index, split, img_size, seed)
            path = Path(folder) / name / f"{index}.png"
            img.save(path)
            paths.append(path)
    return paths


def sample_grid(n_per_class: int = 1, img_size: int = 64, seed: int = 0) -> Image.Image:
    """A labelled grid: one column per class, ``n_per_class`` rows (test split), white margins."""
    if isinstance(n_per_class, bool) or not isinstance(n_per_class, int) or n_per_class < 1:
        raise ValueError(f"n_per_class must be an int >= 1, got {n_per_class!r}")
    h, w = check_size(img_size)
    pad, text_h = 4, max(12, h // 5)
    font = ImageFont.load_default(size=max(9, text_h - 3))
    grid = Image.new("RGB", (pad + len(CLASSES) * (w + pad), text_h + pad + n_per_class * (h + pad)), "white")
    draw = ImageDraw.Draw(grid)
    for label, name in enumerate(CLASSES):
        x = pad + label * (w + pad)
        draw.text((x + w / 2, text_h / 2 + 1), name, fill="black", font=font, anchor="mm")
        for row in range(n_per_class):
            img, _ = render(label + row * len(CLASSES), "test", (h, w), seed)
            grid.paste(img, (x, text_h + pad + row * (h + pad)))
    return grid
