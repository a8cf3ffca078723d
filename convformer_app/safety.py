"""What one stranger can cost the server, bounded where it is spent: memory for kept results, disk for
uploads and training runs, and the words of every refusal.

* `RESULTS`: every session's last inspection (`Run`, its attention maps in float16) lives in ONE store with a
  byte budget for the whole process, least recently used dropped first whichever session it belongs to; a
  session's gr.State holds only a key into it (`Kept`). `CONVFORMER_RESULTS_MB` (default 256).
* `bound_heap`: memory a request frees goes back to the system, so peaks do not pile up across sessions.
* `start_janitor`: at start-up and every JANITOR_S, partial uploads (Gradio's multipart temp files left by
  an upload cut off mid-way) and expired or over-budget training runs are removed.
* `message`: every failure a client can cause gets the app's own one-line message (Gradio's validation and
  preprocessing errors included; `gradio_patches.install_messages` routes Gradio's errors through it): never
  empty, no traceback, no server path, and at most ECHO characters of what the client sent.
"""
from __future__ import annotations

import logging
import os
import re
import secrets
import shutil
import sys
import threading
import time
import traceback
from collections import OrderedDict
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, Generic, TypeVar

import gradio as gr
import numpy as np
from PIL import Image

from convformer.messages import one_line, shown

from .views import clean

log = logging.getLogger(__name__)
V = TypeVar("V")

JANITOR_S = 600.0                  # how often partial uploads and old runs are looked for
PARTIAL_UPLOAD_S = 600.0           # a multipart temp file untouched this long is an upload that was cut off
ECHO = 200                         # characters of a client's input a message may repeat


def _env_mb(name: str, default: float) -> int:
    return int(float(os.environ.get(name, default)) * 2**20)


# ---- a byte budget for the whole process -----------------------------------------------------------------
class ByteLRU(Generic[V]):
    """Values kept by key within `budget` bytes in all, least recently used dropped first. Keys are random
    (a session keeps its key in a gr.State; nobody can guess another's). A value larger than the whole budget
    is kept alone, until the next one."""

    def __init__(self, budget: int, size_of: Callable[[V], int]):
        self.budget, self.size_of = budget, size_of
        self._items: OrderedDict[str, tuple[V, int]] = OrderedDict()
        self._lock = threading.Lock()
        self.nbytes = 0
        self.dropped = 0

    def put(self, value: V) -> str:
        key, size = secrets.token_urlsafe(16), self.size_of(value)
        with self._lock:
            while self._items and self.nbytes + size > self.budget:
                _, (_, old) = self._items.popitem(last=False)
                self.nbytes -= old
                self.dropped += 1
            self._items[key] = (value, size)
            self.nbytes += size
        return key

    def get(self, key: Any) -> V | None:
        if not isinstance(key, str):
            return None
        with self._lock:
            item = self._items.get(key)
            if item is None:
                return None
            self._items.move_to_end(key)
            return item[0]

    def __len__(self) -> int:
        return len(self._items)


def nbytes(value: Any) -> int:
    """Bytes held by numpy arrays and PIL images in `value` (a dataclass, dict, list or tuple of them)."""
    seen, total, stack = set(), 0, [value]
    while stack:
        v = stack.pop()
        if id(v) in seen:
            continue
        seen.add(id(v))
        if isinstance(v, np.ndarray):
            total += v.nbytes
        elif isinstance(v, Image.Image):
            total += v.width * v.height * len(v.getbands())
        elif isinstance(v, dict):
            stack.extend(v.values())
        elif isinstance(v, (list, tuple)):
            stack.extend(v)
        elif hasattr(v, "__dataclass_fields__"):
            stack.extend(getattr(v, f) for f in v.__dataclass_fields__)
    return total


RESULTS: ByteLRU = ByteLRU(_env_mb("CONVFORMER_RESULTS_MB", 256), nbytes)


class Kept:
    """What a session's gr.State holds instead of its inspection: a key into RESULTS. Reading a field reads
    the kept Run; once the store has dropped it, gr.Error asks the person to run again."""

    __slots__ = ("key",)

    def __init__(self, key: str):
        self.key = key

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        run = RESULTS.get(self.key)
        if run is None:
            raise gr.Error("This result is no longer kept (the server keeps the most recent ones within its "
                           "memory budget): press Run again.")
        return getattr(run, name)


def keep(run: Any) -> Kept:
    """Keep a session's inspection in RESULTS; what the session's gr.State holds."""
    return Kept(RESULTS.put(run))


# ---- the heap: freed memory goes back to the system -------------------------------------------------------
MMAP_THRESHOLD = 4 * 2**20   # allocations from this size up get their own pages, returned when freed
ARENA_MAX = 2                # malloc pools for all threads


def bound_heap() -> bool:
    """glibc only: give every allocation of MMAP_THRESHOLD bytes or more its own pages (returned to the
    system when freed; by default the threshold grows to 32 MB and a request's attention maps stay in the
    heap) and use at most ARENA_MAX malloc pools. What MALLOC_MMAP_THRESHOLD_ / MALLOC_ARENA_MAX would do,
    set from inside. Measured: 10 sessions of the largest model grew the server 1.1 GB without, 3 MB with.
    Returns whether it was applied."""
    import ctypes
    import ctypes.util
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    return bool(mallopt(-3, MMAP_THRESHOLD)) and bool(mallopt(-8, ARENA_MAX))  # M_MMAP_THRESHOLD, M_ARENA_MAX


# ---- disk: partial uploads and training runs ---------------------------------------------------------------
def remove_partial_uploads(folder: Path, older_than: float = PARTIAL_UPLOAD_S) -> int:
    """Delete Gradio's multipart temp files (`tmp*`, directly in its upload folder) untouched for
    `older_than` seconds: what an upload cut off mid-way leaves. Finished uploads live in sub-folders."""
    removed, now = 0, time.time()
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return 0
    for entry in entries:
        try:
            if (entry.name.startswith("tmp") and entry.is_file(follow_symlinks=False)
                    and now - entry.stat(follow_symlinks=False).st_mtime >= older_than):
                os.unlink(entry.path)
                removed += 1
        except OSError:
            continue
    return removed


def prune_runs(root: Path, budget: int, ttl: float, active: Iterable[Path] = ()) -> list[Path]:
    """Delete run folders under `root` older than `ttl` seconds, then the oldest ones while all of them
    together hold more than `budget` bytes; folders in `active` (runs still going) are kept. Returns the
    folders deleted."""
    keep = {Path(p).resolve() for p in active}
    runs = []
    for d in (root.iterdir() if root.is_dir() else ()):
        if d.is_dir() and not d.is_symlink() and d.resolve() not in keep:
            size = sum(f.stat().st_size for f in d.rglob("*") if f.is_file() and not f.is_symlink())
            runs.append((d.stat().st_mtime, size, d))
    runs.sort()
    total = sum(size for _, size, _ in runs) + sum(
        f.stat().st_size for p in keep if p.is_dir() for f in p.rglob("*") if f.is_file())
    now, gone = time.time(), []
    for mtime, size, d in runs:
        if now - mtime > ttl or total > budget:
            shutil.rmtree(d, ignore_errors=True)
            total -= size
            gone.append(d)
    return gone


_JANITOR: threading.Thread | None = None


def start_janitor(upload_folder: Path, tasks: Iterable[Callable[[], Any]] = (), every: float = JANITOR_S) -> None:
    """Clean once now (start-up: every partial upload is a leftover), then every `every` seconds in a
    daemon thread: partial uploads, then each of `tasks` (e.g. the Train tab's run pruning)."""
    global _JANITOR
    tasks = list(tasks)
    every = float(os.environ.get("CONVFORMER_JANITOR_S", every))
    age = float(os.environ.get("CONVFORMER_PARTIAL_UPLOAD_S", PARTIAL_UPLOAD_S))

    def sweep(older_than: float) -> None:
        remove_partial_uploads(upload_folder, older_than)
        for task in tasks:
            try:
                task()
            except Exception:  # noqa: BLE001 - a cleaning task must never stop the others
                log.exception("janitor task failed")
    sweep(0.0)
    if _JANITOR is None or not _JANITOR.is_alive():
        def loop() -> None:
            while True:
                time.sleep(every)
                sweep(age)
        _JANITOR = threading.Thread(target=loop, name="convformer-janitor", daemon=True)
        _JANITOR.start()


# ---- one-line messages for every failure ----------------------------------------------------------------------
_CHOICES = re.compile(r"^Value: (?P<value>.*) is not in the list of choices: (?P<choices>.*)$", re.S)
_COMPONENT = re.compile(r"input component at index (?P<i>\d+) \(a `(?P<kind>\w+)` component\)")
_HANDLER = re.compile(r"event handler \(named \"?(?P<name>[\w ]+)\"?\)")


_LONG = [re.compile(p % ECHO) for p in (r"'[^']{%d,}'", r'"[^"]{%d,}"', r"\S{%d,}")]  # inner quotes first


def _cut(text: str) -> str:
    """`text` on one line, with every quoted value or unbroken run of ECHO characters or more cut short."""
    text = one_line(text, 10**9)
    for pattern in _LONG:
        text = pattern.sub(lambda m: m.group(0)[:ECHO // 2] + f"… ({len(m.group(0))} characters)", text)
    return text


def message(error: BaseException | None) -> str:
    """The app's one-line message for any failure of a request."""
    if isinstance(error, gr.Error):
        text = str(error.message)
        found = _CHOICES.match(text)
        if found:  # Gradio's own check of a Radio / Dropdown value: it repeats the whole value
            text = f"{shown(found['value'].strip(chr(39) + chr(34)), 80)} is not one of the choices: {one_line(found['choices'], 160)}"
        return one_line(_cut(clean(text)), 500) or "This request cannot be used."
    text = str(error or "")
    if "DecompressionBomb" in text:  # Gradio's gr.Image opened the header of a huge image (it never decodes it)
        return "This image cannot be used: the image is too large; the limit is 40 megapixels."
    where = _COMPONENT.search(text)
    if where:
        name = _HANDLER.search(text)
        return (f"This request cannot be used: argument {where['i']} ({where['kind']}) of "
                f"{name['name'] if name else 'this endpoint'} has the wrong type or value; see the API page.")
    if type(error).__name__ == "ValidationError" and "FileData" in text:
        return "This request cannot be used: a file argument must be an uploaded file (gradio_client: handle_file)."
    if "didn't receive enough input values" in text or "too many" in text.lower():
        return f"This request cannot be used: {one_line(clean(text.split('.')[0]), 200)}."
    kind = type(error).__name__ if error is not None else "unknown"
    return (f"This request cannot be used ({kind}). The server is fine; check the arguments against the API "
            "page, or try another image or configuration.")
