"""Refusal messages: one line, and never more than a short excerpt of what the user sent."""
from __future__ import annotations

from typing import Any

ECHO = 80  # characters of a user's value shown back in a message (names, file names, field values)


def shown(value: Any, limit: int = ECHO) -> str:
    """`repr(value)` on one line, cut to `limit` characters with an ellipsis and the full length."""
    text = repr(value) if not isinstance(value, str) else repr(value.replace("\n", " "))
    if len(text) <= limit:
        return text
    return f"{text[:limit - 1]}… ({len(text)} characters)"


def one_line(text: str, limit: int = 300) -> str:
    """A message on one line, at most `limit` characters."""
    flat = " ".join(str(text).split())
    return flat if len(flat) <= limit else flat[:limit - 1] + "…"


def reason(error: BaseException, limit: int = 160) -> str:
    """Why something failed, for a message: the exception's text on one line (its type when it has none), cut
    to `limit` characters."""
    text = " ".join(str(error).split()) or type(error).__name__
    return text if len(text) <= limit else text[:limit - 3] + "..."
