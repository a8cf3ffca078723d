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
def _pattern(template: str) -> tuple[re.Pattern, int]:
    """A template's English as a regex (each placeholder a lazy group; a repeated one must repeat), and the
    length of its literal text (longer literals are tried first: they are more specific)."""
    parts, seen, literal = [], set(), 0
    for text_part, name, _, _ in string.Formatter().parse(template):
        parts.append(re.escape(text_part))
        literal += len(text_part)
        if name is not None:
            parts.append(f"(?P={name})" if name in seen else f"(?P<{name}>.+?)")
            seen.add(name)
    return re.compile("".join(parts) + r"\Z", re.S), literal


# what `translate` recognises: texts with values, sentences, the library's shape-table notes and fit phrases
_PATTERNS = sorted(((key, *_pattern(en)) for key, (en, _) in TEXT.items()
                    if ("{" in en or len(en) >= 20 or key.startswith(("note.", "fit.", "reason.")))
                    and len(re.findall(r"[A-Za-z]", re.sub(r"\{\w+\}", "", en))) >= 2), key=lambda k: -k[2])


def match(message: str) -> tuple[str, dict[str, str]] | None:
    """(key, values) of the catalogue's English text that `message` is, or None."""
    for key, pattern, _ in _PATTERNS:
        found = pattern.match(message)
        if found:
            return key, found.groupdict()
    return None


def translate(message: str, lang: str | None = None) -> str:
    """`message` (English, e.g. a library error) in `lang` (default: the request's), values kept; parts it
    does not know stay as they are."""
    chosen = lang or LANG.get()
    if chosen == LANGS[0] or not message:
        return message
    found = match(message)
    if found is None:
        return message
    key, values = found
    return text(key, chosen, **{k: translate(v, chosen) for k, v in values.items()})


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

    def split(args: tuple, kwargs: dict) -> tuple[tuple, dict, Any]:
        """(args, kwargs for fn, the request). Gradio inserts the request at the parameter's position, or
        after the inputs when fewer inputs than parameters are wired: found by its type."""
        at = next((i for i, a in enumerate(args) if isinstance(a, gr.Request)), None)
        if at is not None:
            request = args[at]
            if not own:
                args = args[:at] + args[at + 1:]
        else:
            request = kwargs.get("request") if own else kwargs.pop("request", None)
        return args, kwargs, request

    def error(e: gr.Error) -> gr.Error:
        e.message = translate(str(e.message))
        e.args = (e.message,)
        return e

    if inspect.isgeneratorfunction(fn):
        @functools.wraps(fn)
        def stream(*args, **kwargs) -> Iterator:
            args, kwargs, request = split(args, kwargs)
            lang = lang_of(request)
            token = LANG.set(lang)
            try:
                items = fn(*args, **kwargs)
            finally:
                LANG.reset(token)
            while True:  # Gradio resumes a generator from a fresh context each time: set LANG for each step
                token = LANG.set(lang)
                try:
                    item = next(items)
                except StopIteration:
                    return
                except gr.Error as e:
                    raise error(e) from None
                finally:
                    LANG.reset(token)
                yield item
        wrapper: Callable = stream
    else:
        @functools.wraps(fn)
        def call(*args, **kwargs):
            args, kwargs, request = split(args, kwargs)
            token = LANG.set(lang_of(request))
            try:
                return fn(*args, **kwargs)
            except gr.Error as e:
                raise error(e) from None
            finally:
                LANG.reset(token)
        wrapper = call
    wrapper.__signature__ = sig.replace(parameters=params)
    wrapper.__annotations__ = {**getattr(fn, "__annotations__", {}), "request": gr.Request}
    return wrapper


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
