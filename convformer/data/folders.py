"""Bring your own data, safely: extract an uploaded zip and load an ImageFolder-style tree.

Layout, as torchvision's ``ImageFolder``: ``root/<class name>/<any sub folders>/<image>``.
``safe_extract_zip`` refuses path traversal, absolute paths, symlinks, too many entries and zip
bombs (checked on declared sizes first, then on the bytes really written), and returns the
folder to use as root. ``load_image_folder`` checks every image (decodable, not too large),
lists the files it skipped and why, and fails with a clear ``DatasetError`` when a class has
too few images. A ``Stop`` (a cancel event and / or a deadline) is checked per zip entry and per
image, so Cancel and a time limit cover loading too. Images are decoded by ``images.load_image``
(decode limits checked from the header first). Nothing here follows a symlink or changes a global
PIL setting.
"""

from __future__ import annotations

import os
import stat
import threading
import time
import unicodedata
import zipfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

import torch
from PIL import Image

from . import images

from ..export.checkpoint import MAX_NAME
from ..messages import one_line, shown

IMAGE_EXTENSIONS: tuple[str, ...] = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff")
_CHUNK = 1 << 20
_RATIO_MIN_BYTES = 1 << 20  # entries smaller than this are never called a bomb
MAX_NESTING = 32            # folders above a file, in a zip or a dataset folder


class DatasetError(ValueError):
    """A user-supplied dataset (zip or folder) is unusable; the message says why."""


class LoadingStopped(DatasetError):
    """Loading stopped before the end: cancelled, or over its time limit."""


@dataclass
class Stop:
    """When loading must stop, checked once per zip entry and per image: a cancel event (a Cancel button)
    and / or a deadline on `time.monotonic()` (a run's time limit)."""

    cancel: threading.Event | None = None
    deadline: float | None = None

    @classmethod
    def after(cls, seconds: float | None, cancel: threading.Event | None = None) -> "Stop":
        return cls(cancel, None if seconds is None else time.monotonic() + seconds)

    def check(self, what: str) -> None:
        """Raise LoadingStopped (saying how far `what` got) when cancelled or past the deadline."""
        if self.cancel is not None and self.cancel.is_set():
            raise LoadingStopped(f"cancelled while {what}")
        if self.deadline is not None and time.monotonic() > self.deadline:
            raise LoadingStopped(f"the time limit was reached while {what}")


def _hidden(part: str) -> bool:
    return part.startswith(".") or part == "__MACOSX"


def _entry_parts(info: zipfile.ZipInfo) -> tuple[str, ...]:
    """Validated path components of a zip entry; raises DatasetError on unsafe entries."""
    name = info.filename
    mode = info.external_attr >> 16
    if stat.S_ISLNK(mode):
        raise DatasetError(f"zip entry {shown(name)} is a symbolic link; links are not allowed")
    posix = name.replace("\\", "/")
    if posix.startswith("/") or (len(posix) > 1 and posix[1] == ":"):
        raise DatasetError(f"zip entry {shown(name)} has an absolute path")
    parts = tuple(p for p in PurePosixPath(posix).parts if p not in ("", "."))
    if ".." in parts:
        raise DatasetError(f"zip entry {shown(name)} contains '..' and could escape the destination")
    if len(parts) > MAX_NESTING:
        raise DatasetError(f"zip entry {shown(name, 60)} is {len(parts) - 1} folders deep; the limit is "
                           f"{MAX_NESTING}")
    return parts


def _plan(zf: zipfile.ZipFile, max_files: int, max_total_bytes: int,
          max_ratio: float) -> list[tuple[zipfile.ZipInfo, tuple[str, ...]]]:
    """Check every entry's metadata before anything is written; return the files to extract."""
    infos = zf.infolist()
    if len(infos) > max_files:
        raise DatasetError(f"zip has {len(infos)} entries, more than max_files={max_files}")
    plan, total = [], 0
    for info in infos:
        parts = _entry_parts(info)
        if info.is_dir() or not parts or any(_hidden(p) for p in parts):
            continue
        if info.file_size > _RATIO_MIN_BYTES and info.file_size > max_ratio * max(info.compress_size, 1):
            raise DatasetError(
                f"zip entry {info.filename!r} expands {info.file_size / max(info.compress_size, 1):.0f}x "
                f"(limit max_ratio={max_ratio}); refusing a possible zip bomb")
        total += info.file_size
        if total > max_total_bytes:
            raise DatasetError(f"zip declares more than max_total_bytes={max_total_bytes} of data "
                               f"(reached at entry {shown(info.filename)})")
        plan.append((info, parts))
    return plan


def _copy_entry(zf: zipfile.ZipFile, info: zipfile.ZipInfo, target: Path, budget: int,
                max_ratio: float) -> int:
    """Stream one entry to ``target``; stop as soon as real bytes break a limit. Returns bytes."""
    written = 0
    with zf.open(info) as src, open(target, "xb") as dst:
        while chunk := src.read(_CHUNK):
            written += len(chunk)
            if written > info.file_size or written > budget:
                raise DatasetError(f"zip entry {shown(info.filename)} is larger than declared or "
                                   "exceeds max_total_bytes")
            if written > _RATIO_MIN_BYTES and written > max_ratio * max(info.compress_size, 1):
                raise DatasetError(f"zip entry {shown(info.filename)} exceeds max_ratio={max_ratio}; "
                                   "refusing a possible zip bomb")
            dst.write(chunk)
    return written


def _dataset_root(dest: Path) -> Path:
    """``dest``, or its single top-level folder when that folder holds the class folders."""
    children = [c for c in dest.iterdir() if not _hidden(c.name)]
    if len(children) == 1 and children[0].is_dir():
        inner = children[0]
        if any(c.is_dir() and not _hidden(c.name) for c in inner.iterdir()):
            return inner
    return dest


def safe_extract_zip(zip_path: str | Path, dest: str | Path, *, max_files: int = 20000,
                     max_total_bytes: int = 2_000_000_000, max_ratio: float = 200,
                     stop: Stop | None = None) -> Path:
    """Extract ``zip_path`` into ``dest`` safely and return the dataset root folder.

    Refuses (``DatasetError``, naming the entry) absolute paths, ``..`` components, symlinks,
    more than ``max_files`` entries, more than ``max_total_bytes`` (declared or actually
    written), and entries that expand more than ``max_ratio`` times. Skips ``__MACOSX`` and
    hidden files. ``stop`` is checked before each entry (``LoadingStopped``). On any error the
    files written so far are removed.
    """
    zip_path, dest = Path(zip_path), Path(dest)
    if not _is(zip_path, Path.is_file):
        raise DatasetError(f"zip file {shown(zip_path.name)} does not exist")
    if not zipfile.is_zipfile(zip_path):
        raise DatasetError(f"{shown(zip_path.name)} is not a zip file")
    dest.mkdir(parents=True, exist_ok=True)
    base = dest.resolve()
    written: list[Path] = []
    try:
        with zipfile.ZipFile(zip_path) as zf:
            budget = max_total_bytes
            plan = _plan(zf, max_files, max_total_bytes, max_ratio)
            for i, (info, parts) in enumerate(plan):
                if stop is not None:
                    stop.check(f"extracting the zip ({i} of {len(plan)} files done)")
                target = base.joinpath(*parts)
                if not target.parent.resolve().is_relative_to(base):
                    raise DatasetError(f"zip entry {shown(info.filename)} would be written outside the destination")
                if target.exists() or target.is_symlink():
                    raise DatasetError(f"zip entry {shown(info.filename)} already exists (a duplicate entry, "
                                       "or the destination is not empty)")
                target.parent.mkdir(parents=True, exist_ok=True)
                written.append(target)
                budget -= _copy_entry(zf, info, target, budget, max_ratio)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, NotImplementedError, EOFError,
            OSError, RuntimeError) as exc:
        _remove(written, base)
        raise DatasetError(f"cannot extract {shown(zip_path.name)}: {_reason(exc)}") from exc
    except DatasetError:
        _remove(written, base)
        raise
    return _dataset_root(base)


def _is(path: Path, test: Callable[[Path], bool]) -> bool:
    """`test(path)`, False where the path itself cannot be looked up (a name too long, ...)."""
    try:
        return test(path)
    except OSError:
        return False


def _reason(exc: BaseException) -> str:
    """Why an extraction failed, without the server paths an OSError carries."""
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return one_line(str(exc), 120) or type(exc).__name__


def _remove(files: list[Path], base: Path) -> None:
    """Best-effort removal of extracted files and the folders that became empty."""
    for f in files:
        f.unlink(missing_ok=True)
    for d in sorted({p.parent for p in files}, key=lambda p: len(p.parts), reverse=True):
        while d != base and d.is_dir() and not any(d.iterdir()):
            d.rmdir()
            d = d.parent


def class_name(folder: str) -> str:
    """A class folder's name as a class name: Unicode NFC (a name typed on macOS, NFD, and elsewhere is one
    class), within the limit a checkpoint's class names have (checked here, before anything is trained)."""
    name = unicodedata.normalize("NFC", folder)
    if len(name) > MAX_NAME:
        raise DatasetError(f"class folder {shown(name, 60)} has a name of {len(name)} characters; the limit is "
                           f"{MAX_NAME} (the checkpoint stores class names)")
    return name


@dataclass
class ImageFolderData:
    """A checked image folder: class names, (file, label) samples, and (file, reason) skipped."""

    classes: list[str]
    samples: list[tuple[Path, int]]
    skipped: list[tuple[Path, str]] = field(default_factory=list)

    def counts(self) -> dict[str, int]:
        """Number of usable images per class name."""
        out = dict.fromkeys(self.classes, 0)
        for _, label in self.samples:
            out[self.classes[label]] += 1
        return out


def _check_image(path: Path, max_pixels: int) -> str | None:
    """None if ``path`` looks like a decodable image within ``max_pixels`` and the decode limits of
    ``images`` (checked from its header), else the reason."""
    try:
        with images.open_image(path, min_side=1) as img:
            w, h = img.size
            if w * h > max_pixels:
                return f"too large: {w}x{h} = {w * h} pixels > max_pixels={max_pixels}"
            if img.format == "JPEG":  # verify() reads nothing of a JPEG: decode it at 1/8 scale instead
                img.draft(img.mode, (max(1, w // 8), max(1, h // 8)))
                img.load()
            else:
                img.verify()
    except images.ImageError as exc:
        return str(exc)
    except Exception as exc:  # noqa: BLE001 - PIL raises many types for broken files
        return f"not a readable image ({type(exc).__name__})"
    return None


def _class_files(class_dir: Path, skipped: list[tuple[Path, str]]) -> list[Path]:
    """Sorted regular files under ``class_dir`` without following symlinks."""
    files = []
    for dirpath, dirnames, filenames in os.walk(class_dir, followlinks=False):
        d = Path(dirpath)
        if len(d.relative_to(class_dir).parts) >= MAX_NESTING:  # os.walk recurses: stop well before Python's limit
            skipped += [(d / n, f"more than {MAX_NESTING} folders deep") for n in dirnames]
            dirnames[:] = []
        for name in sorted(dirnames):
            if (d / name).is_symlink():
                skipped.append((d / name, "symbolic link (not followed)"))
        dirnames[:] = sorted(n for n in dirnames if not _hidden(n) and not (d / n).is_symlink())
        for name in sorted(filenames):
            p = d / name
            if _hidden(name):
                continue
            if p.is_symlink():
                skipped.append((p, "symbolic link (not followed)"))
            else:
                files.append(p)
    return files


def load_image_folder(root: str | Path, *, min_per_class: int = 2, max_images: int = 50000,
                      max_pixels: int = 40_000_000, extensions: Sequence[str] = IMAGE_EXTENSIONS,
                      stop: Stop | None = None) -> ImageFolderData:
    """Scan ``root/<class>/...`` and check every image's header; raises ``DatasetError`` when unusable.

    Classes are the sorted, non-hidden sub-folders of ``root`` (at least two). Files with other
    extensions, undecodable images, images over ``max_pixels`` and images over the decode limits of
    ``images`` are listed in ``skipped``. Every class needs ``min_per_class`` usable images; more
    than ``max_images`` is an error. ``stop`` is checked before each image (``LoadingStopped``).
    """
    root = Path(root)
    if not _is(root, Path.is_dir):
        raise DatasetError(f"dataset folder {shown(root.name)} does not exist or is not a folder")
    exts = {e.lower() if e.startswith(".") else "." + e.lower() for e in extensions}
    skipped: list[tuple[Path, str]] = []
    class_dirs = []
    for p in sorted(root.iterdir()):
        if _hidden(p.name):
            continue
        if p.is_symlink():
            skipped.append((p, "symbolic link (not followed)"))
        elif p.is_dir():
            class_dirs.append(p)
        else:
            skipped.append((p, "not inside a class folder"))
    if len(class_dirs) < 2:
        raise DatasetError(f"{shown(root.name)} needs at least 2 class sub-folders (one per class), "
                           f"found {len(class_dirs)}: {shown([p.name for p in class_dirs])}")
    names = [class_name(p.name) for p in class_dirs]  # one class per name as it reads (NFC and NFD alike)
    classes = sorted(set(names))
    if len(classes) < 2:
        raise DatasetError(f"{shown(root.name)} needs at least 2 class sub-folders (one per class), found "
                           f"{len(classes)} name: {shown(classes)}")
    samples: list[tuple[Path, int]] = []
    candidates = 0
    for name, class_dir in zip(names, class_dirs):
        label = classes.index(name)
        for p in _class_files(class_dir, skipped):
            if p.suffix.lower() not in exts:
                skipped.append((p, f"extension {p.suffix!r} is not an image type"))
                continue
            candidates += 1
            if stop is not None:
                stop.check(f"checking images ({candidates - 1} done)")
            if candidates > max_images:
                raise DatasetError(f"more than max_images={max_images} images in {shown(root.name)}")
            reason = _check_image(p, max_pixels)
            if reason:
                skipped.append((p, reason))
            else:
                samples.append((p, label))
    data = ImageFolderData(classes, sorted(samples, key=lambda s: (s[1], str(s[0]))), skipped)
    short = {c: n for c, n in data.counts().items() if n < min_per_class}
    if short:
        detail = ", ".join(f"{shown(c, 40)} has {n}" for c, n in list(short.items())[:5])
        detail += f", and {len(short) - 5} more" if len(short) > 5 else ""
        raise DatasetError(f"each class needs at least {min_per_class} usable images: {detail}")
    return data


class FolderDataset(torch.utils.data.Dataset):
    """A torch Dataset over ``ImageFolderData``: item i is (transform(RGB image), label).

    Each image is decoded by ``images.load_image`` (decode limits checked from its header first);
    with ``max_side`` it is decoded reduced to at most that side (JPEG at a reduced DCT scale).
    ``stop`` is checked before each image (``LoadingStopped``; in this process, so with
    DataLoader workers it only stops the items read here)."""

    def __init__(self, data: ImageFolderData, transform: Callable[[Image.Image], Any] | None = None, *,
                 max_side: int | None = None, stop: Stop | None = None) -> None:
        self.data = data
        self.transform = transform
        self.max_side, self.stop = max_side, stop
        self.classes: list[str] = list(data.classes)
        self.class_to_idx: dict[str, int] = {c: i for i, c in enumerate(self.classes)}
        self.samples: list[tuple[Path, int]] = list(data.samples)
        self.targets: list[int] = [label for _, label in self.samples]

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, idx: int) -> tuple[Any, int]:
        if self.stop is not None:
            self.stop.check(f"loading images ({idx} of {len(self)} done)")
        path, label = self.samples[idx]
        try:
            img = images.load_image(path, max_side=self.max_side, min_side=1)
        except images.ImageError as exc:
            raise DatasetError(f"cannot read image {shown(path.name)}: {exc}") from exc
        return (self.transform(img) if self.transform else img), label
