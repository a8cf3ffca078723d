"""Every change the app makes to Gradio's internals, in one place. Each was written against Gradio
`GRADIO_VERSION` (requirements.txt pins it) and is listed in `PATCHES` with what it relies on;
tests/test_gradio_patches.py checks each of those assumptions, so an upgrade of Gradio fails there, by name,
instead of somewhere in the page.

Nothing happens at import: app.py's launch installs them (`engine.start` the picture cache, then
`install_messages` (which installs `install_route_guards`), `pace_queue`, `localize`).
"""
from __future__ import annotations

import functools
import inspect
import json
import logging
import os
import sys
import threading
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gradio as gr
import gradio.queueing
import gradio.route_utils
import gradio.routes
from fastapi import HTTPException
from PIL import Image

from convformer.messages import one_line, shown

log = logging.getLogger(__name__)
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
    Patch("install_route_guards", "gradio.routes.App.create_app (adds RequestGuard), gradio.route_utils.get_fn, "
          "Queue.push, Queue.log_message",
          "App.create_app is a staticmethod returning the FastAPI app before it starts; get_fn(blocks, api_name, "
          "body) indexes blocks.fns by body.fn_index; Queue.push(self, body, request, username) returns (ok, "
          "message, state) with state 'error' a 400; Queue.log_message(self, event_id, log, title, level, ...) "
          "sends `log` to a toast that renders HTML (tests/test_hostile3.py sends the malformed requests)"),
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
    `_ShortTracebacks`; and guard Gradio's routes (`install_route_guards`: bodies capped, malformed requests one
    line, toasts escaped)."""
    import gradio.queueing
    import gradio.routes
    import gradio.utils
    original = getattr(gradio.utils.error_payload, "__wrapped__", gradio.utils.error_payload)

    @functools.wraps(original)
    def payload(error: BaseException | None, show_error: bool) -> dict[str, Any]:
        content = original(error, show_error)
        content["error"] = as_text(message(error))  # the toast renders HTML: a value shows as text
        content.setdefault("visible", True)
        return content

    install_route_guards()
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


# ---- Gradio's routes and toasts, safe in public (issue 28) --------------------------------------------------
BODY_LIMIT = 2 * 2**20       # bytes of a request body (JSON: every value the API takes fits in far less)
UPLOAD_PATHS = ("/gradio_api/upload",)  # multipart uploads: Gradio's max_file_size (app.py) bounds them


def as_text(message: object) -> str:
    """`message` as HTML that shows it as text: `&` and `<` escaped (no tag or entity can start; `>`, quotes
    and the rest stay as they are, so an API client reads `x >= 8` as written)."""
    return str(message).replace("&", "&amp;").replace("<", "&lt;")


def _json(status: int, text: str) -> tuple[dict, list[tuple[bytes, bytes]], bytes]:
    body = json.dumps({"detail": text, "error": text}).encode()
    return ({"type": "http.response.start", "status": status,
             "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]},
            [], body)


class RequestGuard:
    """Bounds every request's body (BODY_LIMIT, uploads excepted) and turns an error a route lets escape into
    one line: a 400 for what a malformed request causes (KeyError, TypeError, ValueError, IndexError,
    OverflowError), else a 500; the log gets one line."""

    MALFORMED = (KeyError, TypeError, ValueError, IndexError, OverflowError)

    def __init__(self, app: Any, limit: int = BODY_LIMIT):
        self.app, self.limit = app, limit

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        path = scope.get("path", "")
        limit = None if path.startswith(UPLOAD_PATHS) else self.limit
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if limit is not None and declared is not None and declared.isdigit() and int(declared) > limit:
            return await self._answer(send, 413, self._too_large(int(declared)))
        started, seen = False, 0

        async def counted() -> dict:
            nonlocal seen
            message = await receive()
            if limit is not None and message.get("type") == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    raise _TooLarge(seen)
            return message

        async def watched(message: dict) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, counted, watched)
        except _TooLarge as e:
            if not started:
                await self._answer(send, 413, self._too_large(e.args[0]))
        except Exception as e:  # noqa: BLE001 - the last net: one line, whatever a route raised
            status = 400 if isinstance(e, self.MALFORMED) else 500
            log.warning("%s %s refused (%s): %s", scope.get("method"), one_line(path, 120), type(e).__name__,
                        one_line(str(e), 200))
            if not started:
                text = ("This request cannot be used: it does not fit this endpoint; see the API page."
                        if status == 400 else f"The server could not answer this request ({type(e).__name__}).")
                await self._answer(send, status, text)

    def _too_large(self, size: int) -> str:
        return (f"This request is too large: its body has {size} bytes; the limit is {self.limit // 2**20} MB "
                "(files go through the upload route).")

    @staticmethod
    async def _answer(send: Any, status: int, text: str) -> None:
        start, _, body = _json(status, text)
        await send(start)
        await send({"type": "http.response.body", "body": body})


class _TooLarge(Exception):
    pass


# ---- the patches ------------------------------------------------------------------------------------------
def _get_fn(original):
    @functools.wraps(original)
    def get_fn(blocks, api_name, body):
        index = getattr(body, "fn_index", None)
        if index is not None and index not in blocks.fns:
            raise HTTPException(status_code=400, detail=f"This request cannot be used: fn_index={shown(index, 40)} "
                                "is not an event of this app; see the API page.")
        return original(blocks, api_name, body)
    get_fn.__guarded__ = True
    return get_fn


def _push(original):
    @functools.wraps(original)
    async def push(self, body, request, username):
        session = getattr(body, "session_hash", None)  # None: /call/<name>, which makes its own
        if session is not None and (not isinstance(session, str) or not session.strip() or len(session) > 200):
            return False, "This request cannot be used: session_hash must be a non-empty string.", "error"
        return await original(self, body, request, username)
    push.__guarded__ = True
    return push


def _log_message(original):
    @functools.wraps(original)
    def log_message(self, event_id, log, title, level, duration=10, visible=True):
        return original(self, event_id, as_text(log), as_text(title), level, duration, visible)
    log_message.__guarded__ = True
    return log_message


def _create_app(original):
    @functools.wraps(original)
    def create_app(*args, **kwargs):
        app = original(*args, **kwargs)
        app.add_middleware(RequestGuard)
        return app
    create_app.__guarded__ = True
    return create_app


def install_route_guards() -> None:
    """Gradio's routes and toasts, safe in public (each step once, before demo.launch creates the app):
    `RequestGuard` on every request (a body over BODY_LIMIT bytes is a 413, uploads excepted; an error a route
    lets escape is one line, 400 for a malformed request); an unknown `fn_index` is a 400 naming it, an empty
    `session_hash` a 400 (Gradio 6.31: KeyError, a bare 500 and a 70-line traceback each); gr.Warning / gr.Info
    messages are escaped (`as_text`: the toast renders HTML)."""
    ru, queue = gr.route_utils, gradio.queueing.Queue
    if not getattr(ru.get_fn, "__guarded__", False):
        ru.get_fn = _get_fn(ru.get_fn)
    if not getattr(queue.push, "__guarded__", False):
        queue.push = _push(queue.push)
    if not getattr(queue.log_message, "__guarded__", False):
        queue.log_message = _log_message(queue.log_message)
    app = gradio.routes.App
    if not getattr(app.create_app, "__guarded__", False):
        app.create_app = staticmethod(_create_app(app.create_app))
