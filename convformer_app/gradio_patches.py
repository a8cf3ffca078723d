"""Every change the app makes to Gradio's internals, in one place. Each was written against Gradio
`GRADIO_VERSION` (requirements.txt pins it) and is listed in `PATCHES` with what it relies on;
tests/test_gradio_patches.py checks each of those assumptions, so an upgrade of Gradio fails there, by name,
instead of somewhere in the page.

Nothing happens at import: app.py's launch installs them (`engine.start` the picture cache, then
`install_messages`, `pace_queue`, `localize`).
"""
from __future__ import annotations

import functools
import inspect
import os
import sys
import threading
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gradio as gr
from PIL import Image

GRADIO_VERSION = "6.31.0"  # what every patch below was written against


@dataclass(frozen=True)
class Patch:
    name: str      # the function here that installs it
    target: str    # what of Gradio's it changes
    relies_on: str  # what must stay true of Gradio for it to work (checked by tests/test_gradio_patches.py)


PATCHES = [
    Patch("install_picture_cache", "gradio.processing_utils.save_pil_to_cache",
          "gradio.image_utils calls processing_utils.save_pil_to_cache(img, cache_dir, name, format) through the "
          "module, and names a picture by processing_utils.hash_bytes of encode_pil_to_bytes"),
    Patch("install_messages", "gradio.utils.error_payload, gradio.queueing.error_payload, "
          "the `traceback` of gradio.queueing / routes / utils",
          "error_payload(error, show_error) -> dict with 'error'; the modules print errors with traceback.print_exc"),
    Patch("pace_queue", "Blocks._queue.sleep_when_free, Blocks._queue.progress_update_sleep_when_free",
          "the queue polls with these two attributes (0.001 s and 0.01 s by default)"),
    Patch("localize", "Blocks.fns[*].fn", "each event's BlockFunction calls its `fn` attribute, read per call"),
    Patch("add_translation", "I18n.translations", "gr.I18n sends its `translations` dict to the front end at launch"),
    Patch("install_messages", "Gradio's routes, Queue.push, Queue.log_message, get_fn (route_guards.install)",
          "see convformer_app/route_guards.py and tests/test_hostile3.py"),
]


# ---- the output-picture cache, written atomically ------------------------------------------------------
def save_pil_to_cache(img: Image.Image, cache_dir: str, name: str = "image", format: str = "webp") -> str:
    """Gradio's output-picture cache, written atomically. Gradio 6.31 names a picture by its content hash and
    REWRITES that file in place on every request, so while two sessions get the same picture (the same example,
    the same seeded random model) one of them can download it half-written or empty. Here an existing file is
    kept and a new one appears whole (written beside it, then renamed)."""
    data = gr.processing_utils.encode_pil_to_bytes(img, format)
    folder = Path(cache_dir) / gr.processing_utils.hash_bytes(data)
    folder.mkdir(parents=True, exist_ok=True)
    path = (folder / f"{name}.{format}").resolve()
    if not path.is_file() or path.stat().st_size != len(data):
        part = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.part")
        part.write_bytes(data)
        os.replace(part, path)
    return str(path)


def install_picture_cache() -> None:
    gr.processing_utils.save_pil_to_cache = save_pil_to_cache  # read through the module by gradio.image_utils


# ---- one-line messages for every failure, short log lines ----------------------------------------------------
LOG_LINE = 500  # characters of one line of a logged error


def install_messages(message: Callable[[BaseException | None], str]) -> None:
    """Route every error payload Gradio sends (queue and HTTP routes) through `message` (the app's one-line
    message for any failure: `safety.message`, escaped: the toast renders HTML), and what it logs through
    `_ShortTracebacks`; and guard Gradio's routes (`route_guards.install`: bodies capped, malformed requests one
    line, toasts escaped)."""
    from . import route_guards
    import gradio.queueing
    import gradio.routes
    import gradio.utils
    original = getattr(gradio.utils.error_payload, "__wrapped__", gradio.utils.error_payload)

    @functools.wraps(original)
    def payload(error: BaseException | None, show_error: bool) -> dict[str, Any]:
        content = original(error, show_error)
        content["error"] = route_guards.as_text(message(error))  # the toast renders HTML: a value shows as text
        content.setdefault("visible", True)
        return content

    route_guards.install()
    gradio.utils.error_payload = payload
    gradio.queueing.error_payload = payload
    for module in (gradio.queueing, gradio.routes, gradio.utils):
        module.traceback = _ShortTracebacks(message)


class _ShortTracebacks:
    """What Gradio's queue and routes call `traceback.print_exc()` on: a refusal (gr.Error) is logged as one
    line and any other error as its traceback, every line cut to LOG_LINE characters, so a client's 1 MB value
    does not go into the server's log once per request."""

    def __init__(self, message: Callable[[BaseException | None], str]) -> None:
        self.message = message

    def __getattr__(self, name: str) -> Any:
        return getattr(traceback, name)

    def print_exc(self, *args: Any, **kwargs: Any) -> None:
        error = sys.exc_info()[1]
        text = f"refused: {self.message(error)}" if isinstance(error, gr.Error) else traceback.format_exc()
        print("\n".join(line if len(line) <= LOG_LINE else f"{line[:LOG_LINE]}… ({len(line)} characters)"
                        for line in text.splitlines()), file=sys.stderr)


# ---- the queue's pace ------------------------------------------------------------------------------------
QUEUE_POLL_S, PROGRESS_POLL_S = 0.01, 0.1  # Gradio 6.31's: 0.001 and 0.01


def pace_queue(demo: gr.Blocks) -> None:
    """Let Gradio's queue (made by `demo.queue()`) look for new events every QUEUE_POLL_S instead of every
    millisecond, and for progress to send every PROGRESS_POLL_S instead of every 10 ms. Gradio 6.31 polls at
    those rates whether or not anything waits: 5-8 % of a core on an idle server, a thousand wake-ups a
    second, each of which takes a core from a training run's OpenMP team on 2 cores. Measured (benchmarks/
    NOTES.md section 11): the vit recipe trained 1.14x as long in the app as from the command line, 1.07x
    paced; /predict's median did not change. A progress bar moves 10 times a second."""
    demo._queue.sleep_when_free = QUEUE_POLL_S
    demo._queue.progress_update_sleep_when_free = PROGRESS_POLL_S


# ---- handlers in the page's language ------------------------------------------------------------------
def localize(blocks: gr.Blocks, localized: Callable[[Callable], Callable]) -> None:
    """Every Python handler of `blocks` wrapped by `localized` (i18n.localized: it answers in the language of the
    page that called it), once, after the events are wired: the API and the handlers' signatures do not change."""
    for block_fn in blocks.fns.values():
        fn = block_fn.fn
        if fn is None or getattr(fn, "__localized__", False) or inspect.iscoroutinefunction(fn) \
                or inspect.isasyncgenfunction(fn):
            continue
        block_fn.fn = localized(fn)
        block_fn.fn.__localized__ = True


def add_translation(i18n: gr.I18n, key: str, texts: dict[str, str]) -> None:
    """A key added to a gr.I18n after it was made ({language: text}); the front end gets it at launch."""
    for lang, value in texts.items():
        i18n.translations[lang][key] = value


__all__ = ["GRADIO_VERSION", "PATCHES", "PROGRESS_POLL_S", "QUEUE_POLL_S", "add_translation", "install_messages",
           "install_picture_cache", "localize", "pace_queue", "save_pil_to_cache"]
