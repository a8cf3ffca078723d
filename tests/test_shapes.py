"""Tests for the procedurally generated shapes dataset."""

from collections import Counter

import numpy as np
import pytest
from PIL import Image

from convformer.data.shapes import (CLASSES, ShapesDataset, render, render_with_mask, sample_grid,
                               write_samples)


def _luma(img: Image.Image) -> np.ndarray:
    return np.asarray(img, dtype=np.float32) @ np.array([0.299, 0.587, 0.114], np.float32) / 255


def test_classes_are_unique_and_enough():
    assert len(CLASSES) >= 8 and len(set(CLASSES)) == len(CLASSES)


def test_render_is_deterministic_and_order_independent():
    a, la = render(7, "train", 48, seed=3)
    render(2, "val", 64, seed=1)  # an unrelated call in between must not matter
    b, lb = render(7, "train", 48, seed=3)
    assert a.tobytes() == b.tobytes() and la == lb


@pytest.mark.parametrize("other", [(8, "train", 0), (7, "val", 0), (7, "test", 0), (7, "train", 1)])
def test_different_index_split_or_seed_differ(other):
    index, split, seed = other
    a, _ = render(7, "train", 48, seed=0)
    b, _ = render(index, split, 48, seed=seed)
    assert a.tobytes() != b.tobytes()


def test_labels_cycle_over_classes():
    n = len(CLASSES)
    assert [render(i, "train", 32)[1] for i in range(2 * n)] == list(range(n)) * 2


@pytest.mark.parametrize("size, hw", [(32, (32, 32)), ((40, 72), (40, 72)), ((96, 33), (96, 33))])
def test_sizes_and_mode(size, hw):
    img, _, mask = render_with_mask(3, "train", size)
    assert img.mode == "RGB" and img.size == (hw[1], hw[0])
    assert mask.shape == hw and mask.dtype == np.float32


def test_object_size_is_within_range():
    for i in range(30):
        _, _, mask = render_with_mask(i, "val", (64, 96))
        ys, xs = np.nonzero(mask > 0.5)
        extent = max(np.ptp(ys), np.ptp(xs)) + 1
        # 30-65 % of the short side (64 px), minus what thin shapes or the border cut off.
        assert 0.2 * 64 <= extent <= 0.7 * 64, f"image {i}: object extent {extent}px"
        assert mask.sum() > 0.015 * 64 * 96, f"image {i}: object area too small"


def test_object_contrast():
    for i in range(30):
        img, _, mask = render_with_mask(i, "val", 64)
        luma = _luma(img)
        inside = mask > 0.99
        # A band around the object: pixels near it but outside.
        near = np.zeros_like(inside)
        ys, xs = np.nonzero(mask > 0.01)
        y0, y1 = max(ys.min() - 4, 0), min(ys.max() + 5, 64)
        x0, x1 = max(xs.min() - 4, 0), min(xs.max() + 5, 64)
        near[y0:y1, x0:x1] = True
        near &= mask < 0.01
        assert inside.sum() > 20 and near.sum() > 20
        gap = abs(float(np.median(luma[inside])) - float(np.median(luma[near])))
        assert gap > 0.15, f"image {i}: object luminance gap {gap:.2f} too small"


def test_scene_is_the_same_at_any_resolution():
    _, _, small = render_with_mask(5, "train", 64)
    _, _, big = render_with_mask(5, "train", 128)
    down = np.asarray(Image.fromarray((big * 255).astype(np.uint8)).reduce(2), np.float32) / 255
    a, b = small > 0.5, down > 0.5
    assert (a & b).sum() / (a | b).sum() > 0.9


@pytest.mark.parametrize("kwargs, name", [
    ({"split": "training"}, "split"), ({"img_size": 31}, "img_size"), ({"img_size": (64, 31)}, "img_size"),
    ({"img_size": "64"}, "img_size"), ({"index": -1}, "index"), ({"seed": -2}, "seed"),
])
def test_render_validates_arguments(kwargs, name):
    args = {"index": 0, "split": "train", "img_size": 64, "seed": 0} | kwargs
    with pytest.raises(ValueError, match=name):
        render(**args)


@pytest.mark.parametrize("kwargs, name", [
    ({"split": "dev"}, "split"), ({"size": 0}, "size"), ({"img_size": 16}, "img_size"),
])
def test_dataset_validates_arguments(kwargs, name):
    with pytest.raises(ValueError, match=name):
        ShapesDataset(**kwargs)


def test_dataset_balance_items_and_transform():
    n = len(CLASSES)
    ds = ShapesDataset("val", size=3 * n, img_size=32, transform=lambda im: np.asarray(im))
    assert len(ds) == 3 * n and ds.classes == list(CLASSES)
    assert Counter(ds.targets) == {c: 3 for c in range(n)}
    x, y = ds[4]
    ref, ref_label = render(4, "val", 32)
    assert y == ref_label == ds.targets[4] and np.array_equal(x, np.asarray(ref))
    assert ds[-1][1] == ds.targets[-1]
    with pytest.raises(IndexError):
        ds[3 * n]


def test_dataset_cache_returns_identical_images():
    plain = ShapesDataset("train", size=12, img_size=(32, 48))
    cached = ShapesDataset("train", size=12, img_size=(32, 48), cache=True)
    for i in (0, 5, 0, 5):
        assert plain[i][0].tobytes() == cached[i][0].tobytes()
    assert len(cached._cache) == 2


def test_write_samples_layout(tmp_path):
    paths = write_samples(tmp_path / "samples", per_class=2, img_size=40, split="test", seed=1)
    assert len(paths) == 2 * len(CLASSES)
    assert sorted(p.name for p in (tmp_path / "samples").iterdir()) == sorted(CLASSES)
    for p in paths:
        label = CLASSES.index(p.parent.name)
        index = int(p.stem)
        assert index % len(CLASSES) == label
        with Image.open(p) as img:
            assert img.size == (40, 40)
            assert img.tobytes() == render(index, "test", 40, seed=1)[0].tobytes()


def test_sample_grid_has_a_tile_per_class():
    grid = sample_grid(n_per_class=2, img_size=32)
    assert grid.mode == "RGB"
    assert grid.width >= len(CLASSES) * 32 and grid.height >= 2 * 32
