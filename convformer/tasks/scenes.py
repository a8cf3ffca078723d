"""Shapes scenes: one to several objects of the ten shapes classes per image, for detection and segmentation.

The same renderer as the classification data (`convformer.shapes`: background, clutter, contrasting colours,
pixel noise; deterministic per index / split / seed, any size and aspect), with targets in torchvision's
detection format (`boxes` xyxy float pixels, `labels` int64, instance `masks` bool (N, H, W)) and a semantic
mask (0 = background, 1..10 = the classes).

Overlaps are honest: objects are painted in order, a later one hides what it covers, so the occluded part
leaves the earlier object's mask, and its box (torchvision's `masks_to_boxes` on the visible mask; box edges
are pixel edges, so a one-pixel object is 1 x 1) follows what is visible. A placement that would hide more
than `MAX_HIDDEN` of an object (or of itself) is redrawn, so every object stays recognisable.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw
from safetensors.torch import load_file, save_file
from torchvision.ops import masks_to_boxes

from ..data import shapes
from ..data.shapes import CLASSES

MAX_OBJECTS = 4                 # objects per scene: 1 .. MAX_OBJECTS
RADIUS = (0.12, 0.24)           # object radius as a fraction of the short side
MAX_HIDDEN = 0.3                # at most this fraction of any object may be covered by later ones
SALT = 23                       # keeps scenes apart from the classification images of the same index


@dataclass
class Scene:
    """One rendered scene. `target` is torchvision's detection target: boxes (N, 4) float xyxy pixels,
    labels (N,) int64 in 0..9, masks (N, H, W) bool (visible part only). `semantic` (H, W) int64: 0 is
    background, 1 + label where an object is visible."""

    image: Image.Image
    target: dict[str, torch.Tensor]
    semantic: torch.Tensor


def _polygons(rng: np.random.Generator, label: int, radius: float) -> tuple[list, np.ndarray, np.ndarray]:
    a = rng.uniform(0, 2 * np.pi)
    rot = np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
    polys = [(pts @ rot.T * radius, fill) for pts, fill in shapes.OUTLINES[CLASSES[label]]]
    return polys, polys[0][0].min(0), polys[0][0].max(0)


def _soft_mask(polys: list, centre: np.ndarray, h: int, w: int) -> np.ndarray:
    """Antialiased (drawn at 2x) mask of the placed polygons, float32 (H, W) in [0, 1]."""
    mask = Image.new("L", (2 * w, 2 * h), 0)
    draw = ImageDraw.Draw(mask)
    for pts, fill in polys:
        draw.polygon([tuple(p) for p in (pts + centre) * 2], fill=fill)
    return np.asarray(mask.reduce(2), dtype=np.float32) / 255


def _place(rng: np.random.Generator, label: int, h: int, w: int, taken: list[np.ndarray]) -> np.ndarray | None:
    """The soft mask of one object placed inside the image, overlapping the earlier ones (`taken`, hard masks)
    by at most MAX_HIDDEN of either; None after 8 tries."""
    for _ in range(8):
        polys, lo, hi = _polygons(rng, label, rng.uniform(*RADIUS) * min(h, w))
        centre = -lo + rng.uniform(0, 1, 2) * np.maximum(np.array([w, h]) - (hi - lo), 0)
        soft = _soft_mask(polys, centre, h, w)
        hard = soft >= 0.5
        area = hard.sum()
        if area < 4:
            continue
        if all((hard & t).sum() <= MAX_HIDDEN * min(area, t.sum()) for t in taken):
            return soft
    return None


def _check_size(size: int | Sequence[int]) -> tuple[int, int]:
    return shapes.check_size(size)


def render_scene(index: int, split: str = "val", seed: int = 0, size: int | Sequence[int] = (64, 64)) -> Scene:
    """Scene `index` of `split` ("train" | "val" | "test") at `size` (H, W) or a side, >= 32 px. The same
    arguments give the same pixels and targets; scenes are drawn in fractions of the image, so one index is
    the same scene at any size or aspect."""
    index, seed = shapes.check_nonneg("index", index), shapes.check_nonneg("seed", seed)
    h, w = _check_size(size)
    rng = np.random.default_rng(np.random.SeedSequence([seed, shapes.check_split(split), index, SALT]))
    bg = shapes.background(rng, h, w)
    canvas = Image.fromarray((bg * 255).astype(np.uint8))
    shapes.distractors(rng, canvas, bg.mean((0, 1)))
    out = np.asarray(canvas, dtype=np.float32) / 255
    labels, hard = [], []
    for _ in range(int(rng.integers(1, MAX_OBJECTS + 1))):
        label = int(rng.integers(len(CLASSES)))
        soft = _place(rng, label, h, w, hard)
        if soft is None:
            continue
        luma = float((out @ shapes.LUMA * soft).sum() / max(float(soft.sum()), 1e-6))
        out = out * (1 - soft[..., None]) + shapes.contrasting(rng, luma) * soft[..., None]
        hard = [m & ~(soft >= 0.5) for m in hard] + [soft >= 0.5]  # the new object hides what it covers
        labels.append(label)
    out += rng.standard_normal((h, w, 3), dtype=np.float32) * rng.uniform(0.01, 0.04)
    image = Image.fromarray((np.clip(out, 0, 1) * 255 + 0.5).astype(np.uint8))
    masks = torch.from_numpy(np.stack(hard)) if hard else torch.zeros(0, h, w, dtype=torch.bool)
    boxes = masks_to_boxes(masks) + torch.tensor([0.0, 0.0, 1.0, 1.0]) if len(masks) else torch.zeros(0, 4)
    label_t = torch.tensor(labels, dtype=torch.int64)
    semantic = torch.zeros(h, w, dtype=torch.int64)
    for m, label in zip(masks, labels):
        semantic[m] = label + 1
    return Scene(image, {"boxes": boxes, "labels": label_t, "masks": masks}, semantic)


@dataclass
class SceneTensors:
    """A split of scenes held in memory: images uint8 (N, 3, H, W), semantic uint8 (N, H, W), and the
    detection targets padded to MAX_OBJECTS: boxes float (N, M, 4) xyxy px, labels int64 (N, M) with -1
    where there is no object."""

    images: torch.Tensor
    semantic: torch.Tensor
    boxes: torch.Tensor
    labels: torch.Tensor
    classes: tuple[str, ...] = CLASSES

    def __len__(self) -> int:
        return len(self.images)

    def targets(self, idx: torch.Tensor | None = None) -> list[dict[str, torch.Tensor]]:
        """torchvision-style targets (boxes, labels) of the scenes `idx` (default all)."""
        idx = torch.arange(len(self)) if idx is None else idx
        out = []
        for i in idx.tolist():
            keep = self.labels[i] >= 0
            out.append({"boxes": self.boxes[i][keep], "labels": self.labels[i][keep]})
        return out


_CACHE: dict[tuple, SceneTensors] = {}


def scene_split(split: str, n: int, size: int | Sequence[int] = 64, seed: int = 0,
                cache_dir: str | Path | None = None) -> SceneTensors:
    """The first `n` scenes of a split as tensors (rendered once per process and kept; a longer request
    renders only the missing scenes). With `cache_dir`, also kept there as safetensors between processes."""
    hw = _check_size(size)
    if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= 100_000:
        raise ValueError(f"n must be an int in [1, 100000], got {n!r}")
    key = (split, seed, hw)
    file = Path(cache_dir) / f"scenes_{split}_{seed}_{hw[0]}x{hw[1]}.safetensors" if cache_dir else None
    if file is not None and file.is_file() and len(_CACHE.get(key, ())) < n:
        _CACHE[key] = SceneTensors(**load_file(str(file)))
    have = _CACHE.get(key)
    start = 0 if have is None else len(have)
    if start < n:
        more = [render_scene(i, split, seed, hw) for i in range(start, n)]
        boxes = torch.zeros(len(more), MAX_OBJECTS, 4)
        labels = torch.full((len(more), MAX_OBJECTS), -1, dtype=torch.int64)
        for j, s in enumerate(more):
            k = len(s.target["labels"])
            boxes[j, :k], labels[j, :k] = s.target["boxes"], s.target["labels"]
        new = SceneTensors(torch.stack([torch.from_numpy(np.array(s.image)).permute(2, 0, 1) for s in more]),
                           torch.stack([s.semantic.to(torch.uint8) for s in more]), boxes, labels)
        if have is not None:
            new = SceneTensors(*(torch.cat([getattr(have, f), getattr(new, f)])
                                 for f in ("images", "semantic", "boxes", "labels")))
        _CACHE[key] = have = new
        if file is not None:
            file.parent.mkdir(parents=True, exist_ok=True)
            save_file({f: getattr(new, f).contiguous() for f in ("images", "semantic", "boxes", "labels")}, str(file))
    return SceneTensors(have.images[:n], have.semantic[:n], have.boxes[:n], have.labels[:n])


def sample_figure(n: int = 6, size: int = 96, seed: int = 0) -> Image.Image:
    """Scenes of the test split with their boxes and class names drawn, side by side (the docs' figure)."""
    pad = 4
    fig = Image.new("RGB", (pad + n * (size + pad), 2 * (size + pad) + pad), "white")
    for i in range(n):
        scene = render_scene(i, "test", seed, size)
        boxed = scene.image.copy()
        draw = ImageDraw.Draw(boxed)
        for box, label in zip(scene.target["boxes"].tolist(), scene.target["labels"].tolist()):
            draw.rectangle(box, outline=(255, 255, 0))
            draw.text((box[0] + 1, box[1]), CLASSES[label], fill=(255, 255, 0))
        fig.paste(boxed, (pad + i * (size + pad), pad))
        fig.paste(semantic_picture(scene.semantic), (pad + i * (size + pad), 2 * pad + size))
    return fig


def semantic_picture(semantic: torch.Tensor) -> Image.Image:
    """A semantic mask (H, W) of class indices (0 background) as an RGB picture, one tab10 colour per class."""
    from matplotlib import colormaps
    colours = np.concatenate([[[0, 0, 0]], (np.array(colormaps["tab10"].colors) * 255)]).astype(np.uint8)
    return Image.fromarray(colours[semantic.clamp(0, len(CLASSES)).numpy()])
