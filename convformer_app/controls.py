"""The Explore controls as one typed value.

`Controls` carries the configuration the page shows (fusion stage, preset, hyperparameters, weights) from
the page to the handlers, into the URL and to the Train tab. Gradio hands a handler one value per component;
`spread` turns `fn(..., controls: Controls, ...)` into a handler that takes the controls as separate inputs
(named and defaulted as the fields below, so the API lists them as before) and builds ONE `Controls` at
once: every function after that takes the single value.

Adding a control: a field here (its default is the API default; a new field goes last, after `checkpoint`,
so positional API calls keep working), its component in explore/page.py's `parts` dict, and the code that reads it.
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
# (min, max, step) of each numeric control: explore/page.py builds its sliders from these, and a URL is clamped to them
RANGES: dict[str, tuple[float, float, float]] = {
    "img_size": (32, 512, 8), "patch_size": (2, 64, 1), "embed_dim": (16, 768, 8), "depth": (0, 24, 1),
    "num_heads": (1, 16, 1), "mlp_ratio": (0.5, 8, 0.5)}
HPARAMS = ("img_size", "embed_dim", "depth", "num_heads", "mlp_ratio", "patch_size", "conv_widths",
           "conv_depths", "merge")  # what a checkpoint fixes (and a preset sets)


@dataclass(frozen=True)
class Controls:
    """The Explore configuration, as the page holds it (numbers as the sliders send them; `config()` checks
    them). Field order is the order of the /predict API's parameters after the image."""
    fusion: str = "mid"
    preset: str = "convformer_mid_tiny"
    img_size: int = 224
    embed_dim: int = 192
    depth: int = 4
    num_heads: int = 3
    mlp_ratio: float = 4.0
    patch_size: int = 16
    conv_widths: str = "32, 64, 128, 192"
    conv_depths: str = "1, 1, 2, 2"
    merge: str = "concat"
    weights: str = "bundled"          # bundled | random | upload | trained (weights.WEIGHTS)
    checkpoint: str | None = None     # the uploaded .safetensors, for weights == "upload"

    @classmethod
    def names(cls) -> tuple[str, ...]:
        return tuple(f.name for f in dataclasses.fields(cls))

    @classmethod
    def from_inputs(cls, *values: Any) -> Controls:
        """The value of the components listed in `names()` order (whole floats from sliders become ints)."""
        return cls(*(int(v) if isinstance(v, float) and v.is_integer() and name != "mlp_ratio" else v
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
        try:
            ratio = float(self.mlp_ratio)
        except (TypeError, ValueError, OverflowError):
            raise gr.Error(f"mlp_ratio={shown(self.mlp_ratio)} is not allowed: expected a number") from None
        try:
            cfg = base.replace(
                img_size=_int("img_size", self.img_size), embed_dim=_int("embed_dim", self.embed_dim),
                depth=_int("depth", self.depth), num_heads=_int("num_heads", self.num_heads), mlp_ratio=ratio,
                patch_size=_int("patch_size", self.patch_size), conv_widths=_ints("conv_widths", self.conv_widths),
                conv_depths=_ints("conv_depths", self.conv_depths), merge=self.merge, num_classes=num_classes)
        except gr.Error:  # _int / _ints: already the message (str() of a gr.Error is its repr)
            raise
        except (ValueError, TypeError) as e:  # the library's own check names the field
            raise gr.Error(str(e)) from None
        return cfg

    # ---- the configuration in the URL ----
    def query(self) -> str:
        """The query string (?fusion=mid&depth=6&...) that re-creates these controls (no uploaded file)."""
        values = {k: v for k, v in dataclasses.asdict(self).items() if k != "checkpoint"}
        values = {k: (int(v) if isinstance(v, float) and v.is_integer() else v) for k, v in values.items()}
        for key in ("conv_widths", "conv_depths"):
            values[key] = ",".join(re.split(r"[,\s]+", str(values[key]).strip()))
        return "?" + urlencode(values)

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
        for key in HPARAMS:
            if key not in params:
                continue
            text = params[key]
            if key == "merge":
                ok = text in MERGES
                value: Any = text
            elif key in ("conv_widths", "conv_depths"):
                ok = bool(re.fullmatch(r"\d+(,\s*\d+)*", text))
                value = text.replace(",", ", ")
            else:
                ok = bool(re.fullmatch(r"\d+(\.\d+)?", text))
                value = _clamp(key, float(text), notes) if ok else None
            if ok:
                values[key] = value
            else:
                notes.append(f"{key}={text!r} is not usable")
        return first.replace(**values), notes


def hparams(cfg: ConvFormerConfig) -> dict[str, Any]:
    """The hyperparameter control values (HPARAMS) that describe `cfg`."""
    return {"img_size": cfg.img_size[0], "embed_dim": cfg.embed_dim, "depth": cfg.depth,
            "num_heads": cfg.num_heads, "mlp_ratio": cfg.mlp_ratio, "patch_size": cfg.patch_size,
            "conv_widths": ", ".join(map(str, cfg.conv_widths)),
            "conv_depths": ", ".join(map(str, cfg.conv_depths)), "merge": cfg.merge}


def _clamp(key: str, value: float, notes: list[str]) -> float | int:
    lo, hi, step = RANGES[key]
    clamped = min(max(value, lo), hi)
    clamped = lo + round((clamped - lo) / step) * step
    if clamped != value:
        notes.append(f"{key}={value:g} became {clamped:g} (the control goes from {lo:g} to {hi:g} in steps of "
                     f"{step:g})")
    return clamped if key == "mlp_ratio" else int(clamped)


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
