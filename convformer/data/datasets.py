"""Training data held in memory: every split is decoded once into one uint8 tensor (N, C, H, W), so
epochs read memory instead of decoding images, and small images need no DataLoader workers.

`make_datasets("shapes" | folder | .zip, img_size)` gives train / val (/ test) splits and class names.
Rendered shapes are cached in memory once per (split, seed, size, channels) and shared by every later run
in the process (the app's sessions, repeated runs): `shapes_split` renders only the images it has not got
yet, and the cache drops its least recently used entries beyond `CONVFORMER_SHAPES_CACHE_MB` (default 256).
"""
from __future__ import annotations

import os
import random
import shutil
import tempfile
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset


class ImageTensors(Dataset):
    """A split held in memory: `images` uint8 (N, C, H, W), `labels` int64 (N,), and the class names."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, classes: list[str]):
        if images.dtype != torch.uint8 or images.ndim != 4 or len(images) != len(labels):
            raise ValueError(f"images must be uint8 (N, C, H, W) with one label each, got {tuple(images.shape)} "
                             f"{images.dtype} and {len(labels)} labels")
        self.images, self.labels, self.classes = images, labels.long(), list(classes)

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, idx: int) -> tuple[torch.Tensor, int]:
        return self.images[idx], int(self.labels[idx])


@dataclass
class Datasets:
    """What `make_datasets` returns: train / val (/ test) splits, class names and a short description."""

    train: ImageTensors
    val: ImageTensors
    test: ImageTensors | None
    classes: list[str]
    name: str
    info: dict[str, Any] = field(default_factory=dict)


def materialize(dataset: Dataset, img_size: tuple[int, int], in_chans: int = 3, *, num_workers: int = 0,
                classes: list[str] | None = None) -> ImageTensors:
    """Decode a dataset of (PIL image or tensor, label) once into an `ImageTensors` of `img_size`."""
    if isinstance(dataset, ImageTensors):
        return dataset
    from torchvision import transforms as T
    steps = [T.Grayscale()] if in_chans == 1 else []
    to_uint8 = T.Compose([*steps, T.Resize(tuple(img_size), antialias=True), T.PILToTensor()])
    old = getattr(dataset, "transform", "absent")
    if old == "absent" or old is not None:
        raise ValueError("materialize needs a dataset whose `transform` is None (it sets its own)")
    dataset.transform = to_uint8
    try:
        loader = DataLoader(dataset, batch_size=256, num_workers=num_workers)
        images, labels = zip(*loader) if len(dataset) else ((), ())
    finally:
        dataset.transform = None
    images = torch.cat(images) if images else torch.zeros(0, in_chans, *img_size, dtype=torch.uint8)
    labels = torch.cat(labels) if labels else torch.zeros(0, dtype=torch.long)
    return ImageTensors(images, labels, classes or list(getattr(dataset, "classes", [])))


class ShapesCache:
    """Rendered shapes splits, shared and bounded: key (split, seed, (H, W), in_chans) -> uint8 (N, C, H, W).

    Image i of a split does not depend on how many are rendered (`shapes.render` seeds each image by its
    index), so a request for n images reads the first n of a longer entry, and a longer request renders only
    the missing tail. One lock per key: two sessions asking at once render once.
    """

    def __init__(self, budget_bytes: int):
        self.budget = budget_bytes
        self._entries: OrderedDict[tuple, tuple[torch.Tensor, torch.Tensor]] = OrderedDict()
        self._lock = threading.Lock()
        self._key_locks: dict[tuple, threading.Lock] = {}
        self.rendered = 0  # images rendered so far (for tests and estimates)

    @property
    def nbytes(self) -> int:
        return sum(x.nbytes + y.nbytes for x, y in self._entries.values())

    def cached(self, split: str, seed: int, hw: tuple[int, int], in_chans: int = 3) -> int:
        """How many images of this split are cached."""
        entry = self._entries.get((split, seed, tuple(hw), in_chans))
        return 0 if entry is None else len(entry[1])

    def get(self, split: str, size: int, hw: tuple[int, int], seed: int = 0, in_chans: int = 3, *,
            num_workers: int = 0) -> ImageTensors:
        from . import shapes
        full = shapes.ShapesDataset(split, size, hw, seed)  # validates the arguments
        key = (split, seed, tuple(hw), in_chans)
        with self._lock:
            lock = self._key_locks.setdefault(key, threading.Lock())
        with lock:
            with self._lock:
                entry = self._entries.get(key)
                if entry is not None:
                    self._entries.move_to_end(key)
            have = 0 if entry is None else len(entry[1])
            if have < size:
                more = materialize(_Tail(full, have), hw, in_chans,
                                   num_workers=num_workers)
                self.rendered += size - have
                entry = (more.images, more.labels) if entry is None else (
                    torch.cat([entry[0], more.images]), torch.cat([entry[1], more.labels]))
                with self._lock:
                    self._entries[key] = entry
                    self._entries.move_to_end(key)
                    self._trim(keep=key)
        return ImageTensors(entry[0][:size], entry[1][:size], list(shapes.CLASSES))

    def _trim(self, keep: tuple) -> None:
        while self.nbytes > self.budget and len(self._entries) > 1:
            oldest = next(k for k in self._entries if k != keep)
            del self._entries[oldest]
        if self.nbytes > self.budget:  # one entry over the whole budget is not kept either
            self._entries.clear()

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()


class _Tail(Dataset):
    """Items start.. of a dataset (the images a cache entry is missing)."""

    def __init__(self, dataset: Dataset, start: int):
        self.dataset, self.start = dataset, start

    def __len__(self) -> int:
        return len(self.dataset) - self.start

    def __getitem__(self, i: int):
        return self.dataset[self.start + i]

    @property
    def transform(self):
        return self.dataset.transform

    @transform.setter
    def transform(self, value) -> None:
        self.dataset.transform = value


SHAPES_CACHE = ShapesCache(int(float(os.environ.get("CONVFORMER_SHAPES_CACHE_MB", "256")) * 2 ** 20))


def _split_by_class(labels: list[int], val_fraction: float, seed: int) -> tuple[list[int], list[int]]:
    """Indices of a stratified train / val split, the same for the same seed (at least 1 val per class)."""
    rng = random.Random(seed)
    train, val = [], []
    for label in sorted(set(labels)):
        idx = [i for i, y in enumerate(labels) if y == label]
        rng.shuffle(idx)
        k = min(len(idx) - 1, max(1, round(len(idx) * val_fraction)))
        val += idx[:k]
        train += idx[k:]
    return sorted(train), sorted(val)


def make_datasets(dataset: str, img_size: int | tuple[int, int] = 64, *, in_chans: int = 3,
                  train_size: int = 10000, val_size: int = 1000, test_size: int = 0, seed: int = 0,
                  test_seed: int | None = None, val_fraction: float = 0.2, max_images: int = 50000,
                  num_workers: int = 0, stop: Any = None) -> Datasets:
    """Load `dataset` into memory at `img_size`. `stop` (a `folders.Stop`: cancel event and / or deadline) is
    checked per zip entry and per image of a folder or zip; images are decoded at most 4x `img_size`.

    "shapes": the built-in procedural data, `train_size` / `val_size` / `test_size` images of the train /
    val / test splits rendered with `seed` (the test split with `test_seed`, default seed + 1000).
    A folder `root/<class>/*.png` or a .zip of one: checked by `folders.load_image_folder`, split into
    train / val per class by `seed` (`val_fraction` of each class); no test split.
    Raises ValueError (`folders.DatasetError`) naming what is wrong.
    """
    from . import folders, shapes
    hw = (img_size, img_size) if isinstance(img_size, int) else tuple(img_size)
    if dataset == "shapes":
        test_seed = seed + 1000 if test_seed is None else test_seed
        if train_size + val_size + test_size > max_images:
            raise ValueError(f"train_size + val_size + test_size = {train_size + val_size + test_size} is over "
                             f"max_images={max_images}")
        classes = list(shapes.CLASSES)

        def split(name: str, size: int, s: int) -> ImageTensors:
            return SHAPES_CACHE.get(name, size, hw, s, in_chans, num_workers=num_workers)
        test = split("test", test_size, test_seed) if test_size else None
        return Datasets(split("train", train_size, seed), split("val", val_size, seed), test, classes, "shapes",
                        {"train_size": train_size, "val_size": val_size, "test_size": test_size, "seed": seed,
                         "test_seed": test_seed, "img_size": list(hw)})
    path = Path(dataset)
    tmp = None
    try:
        if path.suffix.lower() == ".zip":
            tmp = tempfile.mkdtemp(prefix="convformer-data-")
            root = folders.safe_extract_zip(path, tmp, stop=stop)
        elif path.is_dir():
            root = path
        else:
            raise ValueError(f"dataset={dataset!r} is neither 'shapes', a folder nor a .zip file")
        data = folders.load_image_folder(root, max_images=max_images, stop=stop)
        train_idx, val_idx = _split_by_class([y for _, y in data.samples], val_fraction, seed)
        images = folders.FolderDataset(data, max_side=4 * max(hw), stop=stop)
        full = materialize(images, hw, in_chans, num_workers=num_workers, classes=data.classes)
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)

    def subset(idx: list[int]) -> ImageTensors:
        return ImageTensors(full.images[idx], full.labels[idx], data.classes)
    return Datasets(subset(train_idx), subset(val_idx), None, data.classes, path.name,
                    {"train_size": len(train_idx), "val_size": len(val_idx), "seed": seed,
                     "val_fraction": val_fraction, "skipped": len(data.skipped), "img_size": list(hw)})
