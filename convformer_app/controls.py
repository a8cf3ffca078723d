"""The Explore controls as one typed value.

`Controls` carries the configuration the page shows (fusion stage, preset, hyperparameters, weights) from
the page to the handlers, into the URL and to the Train tab. Gradio hands a handler one value per component;
`spread` turns `fn(..., controls: Controls, ...)` into a handler that takes the controls as separate inputs
(named and defaulted as the fields below, so the API lists them as before) and builds ONE `Controls` at
once: every function after that takes the single value.

Adding a hyperparameter control: a `Knob` in KNOBS (name, kind, default, range, row, whether a checkpoint fixes
it) and its label in the catalogue (`ctl.<name>`, both languages). The Controls field, its parsing into the
config, the URL query (and clamping), the page's component and what a checkpoint or a preset sets all come from
the Knob (tests/test_app_ui.py adds one and follows it through).
"""
from __future__ import annotations

import dataclasses
import functools
import inspect
import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

import gradio as gr

from convformer.config import FUSIONS, MERGES, ConvFormerConfig
from convformer.messages import shown
from convformer.presets import PRESETS, SHAPES_PRESETS, preset_name

RANDOM_CLASSES = 10
ALL_PRESETS = {**PRESETS, **SHAPES_PRESETS}  # the Preset control's choices: architectures, then the bundled ones
KINDS = ("int", "float", "ints", "choice")  # a whole number, a number, numbers separated by commas, one of `choices`


@dataclass(frozen=True)
class Knob:
    """One hyperparameter control of the Explore page, stated once: the Controls field, the URL key and the
    ConvFormerConfig field it sets are all `name`; the page builds its component, the URL is parsed and clamped,
    and the config is made from this. Its label is the catalogue's `ctl.<name>`."""
    name: str
    kind: str                                      # one of KINDS
    default: Any                                   # the /predict API's default
    range: tuple[float, float, float] | None = None  # (min, max, step) of its slider; a URL is clamped to it
    choices: tuple[str, ...] = ()                  # kind "choice": the allowed values
    row: int | None = None                         # knobs with the same row sit side by side on the page
    fixed: bool = True                             # a checkpoint fixes it (and a preset sets it)

    @property
    def label(self) -> str:
        return f"ctl.{self.name}"

    def parse(self, value: Any) -> Any:
        """The config's value from the control's, or gr.Error naming the field (ranges are the library's check)."""
        if self.kind == "int":
            return _int(self.name, value)
        if self.kind == "ints":
            return _ints(self.name, value)
        if self.kind == "float":
            try:
                return float(value)
            except (TypeError, ValueError, OverflowError):
                raise gr.Error(f"{self.name}={shown(value)} is not allowed: expected a number") from None
        return value

    def shown(self, value: Any) -> Any:
        """The control's value for a config's (an image size's side, numbers joined by commas)."""
        if self.kind == "ints":
            return ", ".join(map(str, value))
        return value[0] if self.kind == "int" and isinstance(value, (tuple, list)) else value

    def from_url(self, text: str, notes: list[str]) -> Any:
        """The control's value from a URL's text (clamped to `range`), or None when it is not usable."""
        if self.kind == "choice":
            return text if text in self.choices else None
        if self.kind == "ints":
            return text.replace(",", ", ") if re.fullmatch(r"\d+(,\s*\d+)*", text) else None
        if not re.fullmatch(r"\d+(\.\d+)?", text):
            return None
        if self.range:
            return _clamp(self, float(text), notes)
        return float(text) if self.kind == "float" else int(float(text))

    def to_url(self, value: Any) -> Any:
        if self.kind == "ints":
            return ",".join(re.split(r"[,\s]+", str(value).strip()))
        return int(value) if isinstance(value, float) and value.is_integer() else value


# The hyperparameter controls, in the order of the /predict API's parameters (after fusion and preset). Adding
# one: a Knob here (a new one goes last so that positional API calls keep working, after `merge`: the fields
# `weights` and `checkpoint` follow the knobs) and its label `ctl.<name>` in the catalogue. Its ConvFormerConfig
# field must exist under the same name.
KNOBS: tuple[Knob, ...] = (
    Knob("img_size", "int", 224, (32, 512, 8), row=0),
    Knob("embed_dim", "int", 192, (16, 768, 8), row=1),
    Knob("depth", "int", 4, (0, 24, 1), row=1),
    Knob("num_heads", "int", 3, (1, 16, 1), row=2),
    Knob("mlp_ratio", "float", 4.0, (0.5, 8, 0.5), row=2),
    Knob("patch_size", "int", 16, (2, 64, 1), row=0),
    Knob("conv_widths", "ints", "32, 64, 128, 192", row=3),
    Knob("conv_depths", "ints", "1, 1, 2, 2", row=3),
    Knob("merge", "choice", "concat", choices=tuple(MERGES)),
)
KNOB = {k.name: k for k in KNOBS}
RANGES: dict[str, tuple[float, float, float]] = {k.name: k.range for k in KNOBS if k.range}  # the sliders'
HPARAMS = tuple(k.name for k in KNOBS if k.fixed)  # what a checkpoint fixes (and a preset sets)


class _ControlsMethods:
    """What a Controls value does (its fields come from KNOBS: see `Controls` below)."""

    @classmethod
    def names(cls) -> tuple[str, ...]:
        return tuple(f.name for f in dataclasses.fields(cls))

    @classmethod
    def from_inputs(cls, *values: Any) -> Controls:
        """The value of the components listed in `names()` order (whole floats from sliders become ints)."""
        return cls(*(int(v) if isinstance(v, float) and v.is_integer() and _kind(name) != "float" else v
                     for name, v in zip(cls.names(), values)))

    def inputs(self) -> tuple:
        """The component values, in `names()` order (for handlers that set every control)."""
        return dataclasses.astuple(self)

    def replace(self, **changes: Any) -> Controls:
        return dataclasses.replace(self, **changes)

    @classmethod
    def of(cls, cfg: ConvFormerConfig, **fields: Any) -> Controls:
        """The controls that describe `cfg` (its fusion stage, its tiny preset unless `preset` is given)."""
        return cls(**{"fusion": cfg.fusion, "preset": preset_name(cfg.fusion), **hparams(cfg), **fields})

    def config(self, num_classes: int = RANDOM_CLASSES) -> ConvFormerConfig:
        """The validated config the controls describe, or gr.Error naming the field. The preset supplies what
        the controls do not show (pool, mean, std); a preset of another fusion stage gives way to that
        stage's tiny one."""
        if self.fusion not in FUSIONS:
            raise gr.Error(f"fusion={shown(self.fusion)} is not allowed: expected one of {', '.join(FUSIONS)}")
        base = ALL_PRESETS[self.preset] if str(self.preset) in ALL_PRESETS and \
            ALL_PRESETS[self.preset].fusion == self.fusion else PRESETS[preset_name(self.fusion)]
        values = {k.name: k.parse(getattr(self, k.name)) for k in KNOBS}  # gr.Error naming the field
        try:
            return base.replace(**values, num_classes=num_classes)
        except (ValueError, TypeError) as e:  # the library's own check names the field
            raise gr.Error(str(e)) from None

    # ---- the configuration in the URL ----
    def query(self) -> str:
        """The query string (?fusion=mid&depth=6&...) that re-creates these controls (no uploaded file)."""
        values = {k: v for k, v in dataclasses.asdict(self).items() if k != "checkpoint"}
        return "?" + urlencode({k: KNOB[k].to_url(v) if k in KNOB else v for k, v in values.items()})

    @classmethod
    def from_query(cls, params: Mapping[str, str], start: Callable[[str, str | None, str], Controls]
                   ) -> tuple[Controls, list[str]]:
        """Controls from a URL query, and what was changed on the way (one phrase per key). `start(fusion,
        preset, weights)` gives the controls to start from (weights.defaults: a bundled checkpoint's
        architecture, else the preset's). Unknown keys are ignored; unusable values keep the start value;
        numbers outside a slider's range are clamped to it."""
        params = {k: str(v)[:100] for k, v in params.items() if isinstance(v, str)}
        notes: list[str] = []
        fusion = params.get("fusion", "mid")
        if fusion not in FUSIONS:
            notes.append(f"fusion={fusion!r} is not a fusion stage")
            fusion = "mid"
        # an architecture in the URL is what the link is about: without a weights choice it runs at random
        choice = params.get("weights") or ("random" if any(k in params for k in HPARAMS) else "bundled")
        first = start(fusion, params.get("preset"), choice)
        values: dict[str, Any] = {}
        for key in (k for k in HPARAMS if k in params):
            value = KNOB[key].from_url(params[key], notes)
            if value is None:
                notes.append(f"{key}={params[key]!r} is not usable")
            else:
                values[key] = value
        return first.replace(**values), notes


# The Explore configuration, as the page holds it (numbers as the sliders send them; `config()` checks them).
# Field order is the order of the /predict API's parameters after the image: fusion, preset, the KNOBS, weights,
# checkpoint.
Controls = dataclasses.make_dataclass(
    "Controls",
    [("fusion", "str", dataclasses.field(default="mid")),
     ("preset", "str", dataclasses.field(default="convformer_mid_tiny")),
     *((k.name, {"int": "int", "float": "float"}.get(k.kind, "str"), dataclasses.field(default=k.default))
       for k in KNOBS),
     ("weights", "str", dataclasses.field(default="bundled")),  # bundled | random | upload | trained | imagenet
     ("checkpoint", "str | None", dataclasses.field(default=None))],  # the uploaded .safetensors (weights=upload)
    bases=(_ControlsMethods,), frozen=True)
Controls.__module__ = __name__
Controls.__doc__ = """The Explore configuration as one typed value (fields: fusion, preset, the KNOBS, weights,
checkpoint); numbers as the sliders send them, checked by `config()`."""


def _kind(name: str) -> str | None:
    return KNOB[name].kind if name in KNOB else None


def hparams(cfg: ConvFormerConfig) -> dict[str, Any]:
    """The hyperparameter control values (HPARAMS) that describe `cfg`."""
    return {name: KNOB[name].shown(getattr(cfg, name)) for name in HPARAMS}


def _clamp(knob: Knob, value: float, notes: list[str]) -> float | int:
    lo, hi, step = knob.range
    clamped = min(max(value, lo), hi)
    clamped = lo + round((clamped - lo) / step) * step
    if clamped != value:
        notes.append(f"{knob.name}={value:g} became {clamped:g} (the control goes from {lo:g} to {hi:g} in steps "
                     f"of {step:g})")
    return clamped if knob.kind == "float" else int(clamped)


def _int(name: str, value: Any) -> int:
    try:
        number = float(value)
    except (TypeError, ValueError, OverflowError):
        number = math.nan
    if not number.is_integer():
        raise gr.Error(f"{name}={shown(value)} is not allowed: expected a whole number")
    return int(number)


def _ints(name: str, value: Any) -> tuple[int, ...]:
    items = re.split(r"[,\s]+", value.strip()) if isinstance(value, str) else list(value or ())
    items = [i for i in items if i != ""]
    if not items:
        raise gr.Error(f"{name} is empty: expected numbers separated by commas, e.g. 32, 64, 128")
    return tuple(_int(name, i) for i in items)


# ---- handlers that take the controls as separate inputs ----------------------------------------------
def spread(fn: Callable) -> Callable:
    """`fn(..., controls: Controls, ...)` as a Gradio handler whose signature has the fields of Controls in
    place of `controls` (so gradio_client sees `fusion`, `img_size`, ... with their defaults). The handler
    builds one Controls from them and calls `fn`. Generators stay generators (Gradio streams them)."""
    sig = inspect.signature(fn)
    params = list(sig.parameters.values())
    at = [p.name for p in params].index("controls")
    fields = [inspect.Parameter(f.name, inspect.Parameter.POSITIONAL_OR_KEYWORD, default=f.default,
                                annotation=f.type)
              for f in dataclasses.fields(Controls)]
    outer = sig.replace(parameters=[*params[:at], *fields, *params[at + 1:]])
    names = Controls.names()

    def call(args: tuple, kwargs: dict) -> tuple[tuple, dict]:
        bound = outer.bind(*args, **kwargs)
        bound.apply_defaults()
        given = dict(bound.arguments)
        controls = Controls.from_inputs(*(given.pop(n) for n in names))
        return (), {**given, "controls": controls}

    if inspect.isgeneratorfunction(fn):
        @functools.wraps(fn)
        def handler(*args, **kwargs):
            a, k = call(args, kwargs)
            yield from fn(*a, **k)
    else:
        @functools.wraps(fn)
        def handler(*args, **kwargs):
            a, k = call(args, kwargs)
            return fn(*a, **k)
    handler.__signature__ = outer  # read by inspect.signature (and so by Gradio) before __wrapped__
    return handler
