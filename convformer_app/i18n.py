"""Every text the app shows, in English and Simplified Chinese: ONE catalogue (`catalogue.TEXT`, data only) for
both of Gradio's paths; this module is the code that shows it.

* Props of components (labels, info lines, tab names, accordion titles, buttons, choice labels, static
  Markdown) are gr.I18n keys: `tr(key)` gives a gr.I18nData that the browser translates into the language
  Gradio picked (the browser's, or the one chosen in Gradio's Settings panel; English when it has no
  translation). `I18N` goes to `launch(i18n=...)`.
* Text built in Python (weights notice, stats, status lines, errors, table headers, chart and diagram
  labels) is formatted here, with the same catalogue, in the language of the page that sent the request:
  Gradio's front end translates a key but neither a key with values nor gr.Error messages, Dataframe
  headers or chart titles. `text(key, **values)` formats in the current request's language (`LANG`), which
  `localized` sets from the page's language cookie (`HEAD` keeps it in step with Gradio's language), else
  the Accept-Language header, else English. API clients send neither, so they get English.
* The library speaks English ("name=value is not allowed: reason"); `translate(message)` recognises the
  catalogue's English patterns in such a message, keeps the values and writes it in the request's language.

Keys with `{placeholders}` are Python-built; keys used as gr.I18n props have none (the front end would
read braces as ICU arguments). A new text: one entry in `catalogue.TEXT`, both languages, the same placeholders.
"""
from __future__ import annotations

import contextvars
import functools
import inspect
import re
import string
from collections.abc import Callable, Iterator
from typing import Any

import gradio as gr

from . import gradio_patches
from .catalogue import LANGS, TEXT
from .tasks.texts import TEXT as _TASKS

TEXT.update(_TASKS)  # the detect / segment views' texts (issue 23), data beside the catalogue
COOKIE = "cf_lang"       # the page's current language, kept by HEAD's script

# ---- the front end: gr.I18n keys ------------------------------------------------------------------------
I18N = gr.I18n(**{lang: {key: pair[i] for key, pair in TEXT.items()} for i, lang in enumerate(LANGS)})


def tr(key: str) -> gr.I18nData:
    """A component prop (label, info, tab name, static Markdown) that the browser shows in its language."""
    if key not in TEXT:
        raise KeyError(f"no text {key!r} in the catalogue")
    if any("{" in t for t in TEXT[key]):
        raise ValueError(f"text {key!r} has values: format it with text(), the browser cannot")
    return I18N(key)


def choices(keys: dict[str, str]) -> list[tuple[gr.I18nData | str, str]]:
    """Choices of a Radio / Dropdown: translated labels, language-neutral values ({value: key}). A value
    with no text in the catalogue (a choice added elsewhere) shows as itself (tests/test_i18n.py finds it)."""
    return [(tr(key) if key in TEXT else value, value) for value, key in keys.items()]


def fixed(build: Callable[[], str]) -> gr.I18nData:
    """Python-built text that is known when the page is built (the start page's weights notice, the server's
    limits): built once in each language and given to the browser as a gr.I18n key of its own, so it follows
    the page's language like a label does."""
    texts = []
    for lang in LANGS:
        token = LANG.set(lang)
        try:
            texts.append(build())
        finally:
            LANG.reset(token)
    key = f"fixed.{len([k for k in I18N.translations[LANGS[0]] if k.startswith('fixed.')])}"
    gradio_patches.add_translation(I18N, key, {lang: re.sub(r"([{}])", r"'\1'", value)  # ICU quoting: a brace
                                               for lang, value in zip(LANGS, texts)})      # is an argument there
    return I18N(key)


# ---- Python-built text: the request's language ---------------------------------------------------------
LANG: contextvars.ContextVar[str] = contextvars.ContextVar("convformer_lang", default="en")


def text(key: str, /, lang: str | None = None, **values: Any) -> str:
    """The catalogue's text for `key` in `lang` (default: the current request's language), formatted."""
    entry = TEXT[key]
    chosen = lang or LANG.get()
    return entry[LANGS.index(chosen) if chosen in LANGS else 0].format(**values)


def pick(tag: str | None) -> str | None:
    """The catalogue language for a language tag ('zh-CN', 'zh-Hans-CN', 'en-US'), None when none fits."""
    tag = (tag or "").strip().lower().replace("_", "-")
    if tag == "zh" or tag.startswith(("zh-cn", "zh-hans", "zh-sg")):
        return "zh-CN"
    if tag == "en" or tag.startswith("en-"):
        return "en"
    return None


def lang_of(request: gr.Request | None) -> str:
    """The language of the page that sent `request`: the cookie HEAD keeps equal to Gradio's current language
    (the browser's, or the one picked in Settings), else the first Accept-Language that has a catalogue
    language, else English."""
    if request is None:
        return "en"
    try:
        cookie = request.cookies.get(COOKIE)
        header = request.headers.get("accept-language", "")
    except AttributeError:  # a Request without an HTTP request behind it
        return "en"
    if cookie:
        return pick(cookie) or "en"  # Gradio shows a language we have no text for in English: so do we
    ranked = []
    for part in header.split(","):
        tag, _, q = part.strip().partition(";q=")
        try:
            ranked.append((-float(q or 1), tag))
        except ValueError:
            continue
    for _, tag in sorted(ranked, key=lambda t: t[0]):
        if pick(tag):
            return pick(tag)
    return "en"


# ---- messages that arrive in English (the library's): recognised by pattern, values kept --------------
# No regular expression touches a message: a template is its literal parts, found with str.find from left to
# right (a quoted value is skipped to its closing quote first), so matching costs O(patterns x length) with
# no backtracking; and a message is cut (`shorten`) before any matching: a value that came from a client
# (a 12 KB "=a=a..." sent as a hyperparameter) cannot make the server work on it.
TRANSLATE_CHARS = 1000  # a message is cut to this before it is matched
WORD_CHARS = 120        # an unbroken run of characters longer than this keeps its start and its last two


Template = tuple[str, tuple[tuple[str, str], ...], int]  # (first literal, ((name, literal after it), ...), literal length)


def _template(template: str) -> Template:
    """A template's English as its literal parts: the text before the first placeholder, then (placeholder,
    the text after it) pairs; and the length of its literal text (longer literals are tried first)."""
    head, rest, literal = "", [], 0
    for text_part, name, _, _ in string.Formatter().parse(template):
        literal += len(text_part)
        if rest:
            rest[-1] = (rest[-1][0], rest[-1][1] + text_part)
        else:
            head += text_part
        if name is not None:
            rest.append((name, ""))
    return head, tuple(rest), literal


def shorten(message: str, limit: int = TRANSLATE_CHARS) -> str:
    """`message` on one line, each unbroken run over WORD_CHARS characters cut to its start, an ellipsis and
    its last two characters (a closing quote stays), the whole at most `limit` characters. Linear."""
    words = []
    for word in str(message).split():
        words.append(word if len(word) <= WORD_CHARS else f"{word[:WORD_CHARS // 2]}…{word[-2:]}")
    text = " ".join(words)
    return text if len(text) <= limit else text[:limit - 1] + "…"


def _fill(template: Template, message: str) -> dict[str, str] | None:
    """The values that make `template` read `message` (each at least one character; a repeated placeholder
    the same each time), or None. Left to right, each literal found once: no backtracking."""
    head, rest, _ = template
    if not rest:
        return {} if message == head else None
    if not message.startswith(head):
        return None
    values: dict[str, str] = {}
    pos = len(head)
    for i, (name, literal) in enumerate(rest):
        if i == len(rest) - 1:  # the last value runs to the literal that ends the message
            end = len(message) - len(literal)
            if end <= pos or not message.endswith(literal):
                return None
        else:
            end = -1
            quote = message[pos] if pos < len(message) and message[pos] in "'\"" else ""
            if quote:  # a quoted value ends at its closing quote
                end = message.find(quote + literal, pos + 1)
                end = end + 1 if end >= 0 else -1
            if end < 0:
                end = message.find(literal, pos + 1)
            if end < 0:
                return None
        value = message[pos:end]
        if values.setdefault(name, value) != value:
            return None
        pos = end + len(literal)
    return values


# what `translate` recognises: texts with values, sentences, the library's shape-table notes and fit phrases
_PATTERNS = sorted(((key, _template(en)) for key, (en, _) in TEXT.items()
                    if ("{" in en or len(en) >= 20 or key.startswith(("note.", "fit.", "reason.")))
                    and len(re.findall(r"[A-Za-z]", re.sub(r"\{\w+\}", "", en))) >= 2), key=lambda k: -k[1][2])


def match(message: str) -> tuple[str, dict[str, str]] | None:
    """(key, values) of the catalogue's English text that `message` is, or None."""
    for key, template in _PATTERNS:
        found = _fill(template, message)
        if found is not None:
            return key, found
    return None


def translate(message: str, lang: str | None = None) -> str:
    """`message` (English, e.g. a library error) in `lang` (default: the request's), values kept; parts it
    does not know stay as they are. The message is cut first (`shorten`), in every language."""
    message = shorten(message) if message else message
    chosen = lang or LANG.get()
    if chosen == LANGS[0] or not message:
        return message
    return _translated(message, chosen, 3)


def _translated(message: str, lang: str, depth: int) -> str:
    found = match(message) if depth else None
    if found is None:
        return message
    key, values = found
    return text(key, lang, **{k: _translated(v, lang, depth - 1) for k, v in values.items()})


# ---- handlers that answer in the page's language -------------------------------------------------------
def localized(fn: Callable) -> Callable:
    """`fn` as a Gradio handler that runs in the language of the page that called it: LANG is set from the
    request (Gradio passes a gr.Request to the extra `request` parameter, which the API does not show), and a
    gr.Error's message is translated on the way out. Generators stay generators."""
    sig = inspect.signature(fn)
    params = list(sig.parameters.values())
    own = "request" in sig.parameters  # fn takes the request itself: pass it on
    if not own:
        at = next((i for i, p in enumerate(params) if p.kind not in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)),
                  len(params))
        params.insert(at, inspect.Parameter("request", inspect.Parameter.POSITIONAL_OR_KEYWORD, default=None,
                                            annotation=gr.Request))
    wrapper = (_localized_stream if inspect.isgeneratorfunction(fn) else _localized_call)(fn, own)
    wrapper.__signature__ = sig.replace(parameters=params)
    wrapper.__annotations__ = {**getattr(fn, "__annotations__", {}), "request": gr.Request}
    return wrapper


def _split(args: tuple, kwargs: dict, own: bool) -> tuple[tuple, dict, Any]:
    """(args, kwargs for the handler, the request). Gradio inserts the request at the parameter's position, or
    after the inputs when fewer inputs than parameters are wired: found by its type. `own`: the handler takes
    the request itself (it stays in its arguments)."""
    at = next((i for i, a in enumerate(args) if isinstance(a, gr.Request)), None)
    if at is not None:
        request = args[at]
        if not own:
            args = args[:at] + args[at + 1:]
    else:
        request = kwargs.get("request") if own else kwargs.pop("request", None)
    return args, kwargs, request


def _error_translated(e: gr.Error) -> gr.Error:
    e.message = translate(str(e.message))
    e.args = (e.message,)
    return e


def _localized_stream(fn: Callable, own: bool) -> Callable:
    """localized for a generator: Gradio resumes it from a fresh context each time, so LANG is set for each step."""
    @functools.wraps(fn)
    def stream(*args, **kwargs) -> Iterator:
        args, kwargs, request = _split(args, kwargs, own)
        lang = lang_of(request)
        token = LANG.set(lang)
        try:
            items = fn(*args, **kwargs)
        finally:
            LANG.reset(token)
        while True:
            token = LANG.set(lang)
            try:
                item = next(items)
            except StopIteration:
                return
            except gr.Error as e:
                raise _error_translated(e) from None
            finally:
                LANG.reset(token)
            yield item
    return stream


def _localized_call(fn: Callable, own: bool) -> Callable:
    """localized for a plain function."""
    @functools.wraps(fn)
    def call(*args, **kwargs):
        args, kwargs, request = _split(args, kwargs, own)
        token = LANG.set(lang_of(request))
        try:
            return fn(*args, **kwargs)
        except gr.Error as e:
            raise _error_translated(e) from None
        finally:
            LANG.reset(token)
    return call


# The page's language as a cookie, so that a request says which language its page shows (Gradio's own
# language lives in the browser; svelte-i18n writes it to <html lang>, also when it is changed in Settings).
HEAD = f"""<script>
(() => {{
  const sync = () => {{
    document.cookie = "{COOKIE}=" + encodeURIComponent(document.documentElement.lang || "") + "; path=/; SameSite=Lax";
  }};
  let shown = document.documentElement.lang;
  new MutationObserver(() => {{  // a new language: the texts built on the server are asked for again
    const now = document.documentElement.lang;
    sync();
    if (shown && now !== shown) document.getElementById("cf-relang")?.click();
    shown = now;
  }}).observe(document.documentElement, {{attributes: true, attributeFilter: ["lang"]}});
  // the cookie is shared by every tab of the site: the tab being used says its own language
  for (const event of ["focus", "pointerdown", "keydown"]) window.addEventListener(event, sync, true);
  sync();
}})();
</script>"""
