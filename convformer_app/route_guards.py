"""Gradio's own routes and toasts, made safe in public: each change here is to Gradio 6.31.0's internals
(tests/test_hostile3.py fails when Gradio is another version or the patched names move).

* `RequestGuard` (an ASGI middleware added to Gradio's app): a request body over BODY_LIMIT bytes is refused
  with 413 and one line (uploads, at /gradio_api/upload, keep Gradio's own max_file_size); and any request
  that still makes a route raise (a malformed request Gradio does not check) is answered 400 or 500 with one
  line of JSON, and logged as one line: never a bare 500 with a 70-line traceback.
* `get_fn`: an unknown `fn_index` (9999, -1, 2**70) is a 400 naming it (Gradio 6.31: KeyError, 500).
* `Queue.push`: an empty `session_hash` is a 400 (Gradio 6.31: a KeyError in the queue, 500).
* /call/v2/<name> with arguments that do not fit the endpoint (`{"data": [null]}`): Gradio 6.31's
  construct_args raises TypeError, a 500; RequestGuard answers it 400 with one line.
* `Queue.log_message` (gr.Warning / gr.Info): the toast renders its message as HTML, so the message is
  HTML-escaped: a value from a URL or a checkpoint shows as text, never as a link or a form. gr.Error's
  message is escaped in safety.message.
"""
from __future__ import annotations

import functools
import json
import logging
from typing import Any

import gradio
import gradio.queueing
import gradio.route_utils
import gradio.routes
from fastapi import HTTPException

from convformer.messages import one_line, shown

log = logging.getLogger(__name__)

GRADIO_VERSION = "6.31.0"    # the version whose internals are patched here
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


def install() -> None:
    """Apply every patch above, once (before demo.launch, which creates the app)."""
    if gradio.__version__ != GRADIO_VERSION:
        log.warning("route_guards: written for Gradio %s, running %s: check each patch", GRADIO_VERSION,
                    gradio.__version__)
    ru, queue = gradio.route_utils, gradio.queueing.Queue
    if not getattr(ru.get_fn, "__guarded__", False):
        ru.get_fn = _get_fn(ru.get_fn)
    if not getattr(queue.push, "__guarded__", False):
        queue.push = _push(queue.push)
    if not getattr(queue.log_message, "__guarded__", False):
        queue.log_message = _log_message(queue.log_message)
    app = gradio.routes.App
    if not getattr(app.create_app, "__guarded__", False):
        app.create_app = staticmethod(_create_app(app.create_app))
