"""The configured model as ONE readable PyTorch file.

`export(config)` returns the source of a module that imports only torch and the standard library and
reads top to bottom like nanoGPT's model.py: the configuration as named constants, each module with shape
comments carrying this configuration's numbers, grid -> tokens and tokens -> grid spelled out,
`class ConvFormer(nn.Module)` constructible with no arguments, and a `__main__` that prints the shape after
every step. Only the parts this configuration uses are written.

The file is generated from what the library builds from: branches and parts from
`model.LAYOUTS[config.fusion]`, every number in a comment from a dry run of the library's own model built
on the meta device (no weights, no compute). Module names and parameter shapes are the library's, so
`ConvFormer().load_state_dict(library_model.state_dict())` is strict and gives the same logits. The timm
pieces the library uses (ConvNormAct, Mlp, PatchEmbed, DropPath, resample_abs_pos_embed) are written out in
plain torch; the facts they depend on (norm epsilons, activations, padding, interpolation) are read from
the library's modules and checked, so a change there flows into the file or stops the export with a
message, never a silent drift. `check(source, model)` proves it for one model.
"""
from __future__ import annotations

import copy
import inspect
import types
from collections.abc import Sequence
from typing import Any

import torch
from timm.layers import resample_abs_pos_embed
from torch import nn

from ..config import ConvFormerConfig
from .writer import ExportError, Writer
from ..layers import ToTokens
from ..model import ConvFormer


def export(model_or_config: ConvFormer | ConvFormerConfig, name: str = "", command: str = "",
           classes: Sequence[str] | None = None) -> str:
    """Python source of one self-contained file defining `ConvFormer` for this configuration.

    name: what the file is (a preset or checkpoint name) for its docstring; command: how it was made;
    classes: class names (a checkpoint's) written as CLASSES."""
    model = model_or_config if isinstance(model_or_config, ConvFormer) else None
    cfg = model.config if model is not None else model_or_config
    skeleton = _skeleton(cfg, model)
    outs, ins = _dry_run(skeleton)
    facts = _facts(model if model is not None else skeleton)
    return Writer(cfg, outs, ins, facts, name=name, command=command,
                  classes=list(classes) if classes else None).source()


def load(source: str, name: str = "convformer_export") -> types.ModuleType:
    """Execute exported source as a fresh module (not added to sys.modules) and return it."""
    module = types.ModuleType(name)
    module.__dict__["__file__"] = f"<{name}>"
    exec(compile(source, f"<{name}>", "exec"), module.__dict__)
    return module


def check(source: str, model: ConvFormer, size: tuple[int, int] | None = None) -> float:
    """Build the exported model, load `model`'s state_dict strictly, run both on one random image (of
    `size`, default the config's) and return the largest absolute difference of the logits."""
    exported = load(source).ConvFormer().eval()
    exported.load_state_dict(model.state_dict(), strict=True)
    device = next(model.parameters()).device
    exported.to(device)
    training = model.training
    x = torch.randn(1, model.config.in_chans, *(size or model.config.img_size),
                    generator=torch.Generator().manual_seed(0)).to(device)
    try:
        model.eval()
        with torch.no_grad():
            return (exported(x) - model(x)).abs().max().item()
    finally:
        model.train(training)


# ---- reading the library model ---------------------------------------------------------------------------
def _skeleton(cfg: ConvFormerConfig, model: ConvFormer | None = None) -> ConvFormer:
    """The library's model for `cfg` on the meta device: its modules and shapes without memory or compute
    (built there directly; if a part cannot be built on meta, a copy of `model` moved there)."""
    try:
        with torch.device("meta"):
            return ConvFormer(cfg).eval()
    except (NotImplementedError, RuntimeError):
        return (copy.deepcopy(model) if model is not None else ConvFormer(cfg)).to("meta").eval()


def _dry_run(meta: ConvFormer) -> tuple[dict[str, tuple], dict[str, Any]]:
    """(output shape, input shape) of every named module of a meta-device model (hooked here: it is ours)
    for one image at the config's size."""
    outs: dict[str, tuple] = {}
    ins: dict[str, Any] = {}

    def hook(name: str):
        def record(module: nn.Module, args: tuple, out: torch.Tensor) -> None:
            outs.setdefault(name, tuple(out.shape))
            first = args[0]
            ins.setdefault(name, tuple(first.shape) if isinstance(first, torch.Tensor)
                           else tuple(tuple(t.shape) for t in first))
        return record

    for n, m in meta.named_modules():
        if n:
            m.register_forward_hook(hook(n))
    cfg = meta.config
    with torch.no_grad():
        meta(torch.zeros(1, cfg.in_chans, *cfg.img_size, device="meta"))
    outs["input"] = ins["input"] = (1, cfg.in_chans, *cfg.img_size)
    return outs, ins


def _one(values: set, what: str) -> Any:
    if len(values) != 1:
        raise ExportError(f"the library model uses several values of {what} ({sorted(values)}); "
                          "the exporter writes one constant")
    return values.pop()


def _facts(model: ConvFormer) -> dict[str, Any]:
    """Numbers and choices the generated code depends on, read from the library's modules."""
    mods = list(model.modules())
    facts: dict[str, Any] = {}
    bns = [m for m in mods if isinstance(m, nn.BatchNorm2d)]
    if bns:
        facts["bn_eps"] = _one({m.eps for m in bns}, "BatchNorm eps")
        facts["bn_momentum"] = _one({m.momentum for m in bns}, "BatchNorm momentum")
        acts = {type(getattr(m, "act", nn.ReLU())).__name__ for m in bns}
        if not acts <= {"ReLU", "Identity"}:
            raise ExportError(f"conv activations {sorted(acts)}: the exporter writes ReLU")
        convs = {(c.kernel_size, c.padding, c.bias is None) for c in (getattr(m, "conv", None) for m in mods
                                                                     if hasattr(m, "bn")) if c is not None}
        if convs - {((3, 3), (1, 1), True)}:
            raise ExportError(f"conv + BatchNorm layers {sorted(convs)}: the exporter writes 3 x 3, padding 1, no bias")
    lns = [m for m in mods if isinstance(m, nn.LayerNorm)]
    if lns:
        facts["ln_eps"] = _one({m.eps for m in lns}, "LayerNorm eps")
    gelus = [m for m in mods if isinstance(m, nn.GELU)]
    if gelus:
        facts["gelu"] = _one({m.approximate for m in gelus}, "GELU approximation")
    if any(isinstance(m, ToTokens) for m in mods):  # the library calls timm's resampler with its defaults
        params = inspect.signature(resample_abs_pos_embed).parameters
        if params["antialias"].default is not True:
            raise ExportError("timm's resample_abs_pos_embed no longer antialiases by default")
        facts["pos_interpolation"] = params["interpolation"].default
    fc1 = [m.fc1 for m in mods if hasattr(m, "fc1")]
    if fc1:
        facts["mlp_hidden"] = _one({m.out_features for m in fc1}, "MLP hidden width")
    return facts


# ---- command line ----------------------------------------------------------------------------------------
def add_parser(subparsers: Any) -> Any:
    """Register `code` on the `python -m convformer` sub-command parser."""
    from ..flags import add_config_flags, add_model_flags
    p = subparsers.add_parser("code", help="write the configured model as one self-contained PyTorch file",
                              description="Write ONE Python file (torch + stdlib) defining ConvFormer for a preset, "
                              "a configuration or a checkpoint's configuration; its state_dict is the library's.")
    add_model_flags(p, fusion=None, fusion_help="default: mid, or the preset's",
                    preset_help="a preset name (default: convformer_<fusion>_tiny)",
                    checkpoint_help="a .safetensors checkpoint: its configuration and class names")
    p.add_argument("-o", "--out", help="write here instead of printing")
    add_config_flags(p)
    p.set_defaults(func=code_command)
    return p


def command_for(cfg: ConvFormerConfig) -> str:
    """The `python -m convformer code` command that writes the file for `cfg` (every field that differs from
    the fusion stage's tiny preset, as flags)."""
    from ..flags import CONFIG_FLAGS
    from ..presets import PRESETS, preset_name
    base = PRESETS[preset_name(cfg.fusion)]
    words = [f"python -m convformer code --fusion {cfg.fusion}"]
    for name in CONFIG_FLAGS:
        value = getattr(cfg, name)
        if value != getattr(base, name):
            text = " ".join(map(str, value)) if isinstance(value, tuple) else str(value)
            words.append(f"--{name.replace('_', '-')} {text}")
    return " ".join(words)


def _command(args: Any) -> str:
    from ..flags import CONFIG_FLAGS
    words = ["python -m convformer code"]
    for name in ("preset", "fusion", "checkpoint", *CONFIG_FLAGS):
        value = getattr(args, name, None)
        if value is not None:
            text = " ".join(map(str, value)) if isinstance(value, list) else str(value)
            words.append(f"--{name.replace('_', '-')} {text}")
    return " ".join(words)


def code_command(args: Any) -> None:
    """`python -m convformer code ...`: build the library model, write its file, and check the two agree."""
    from pathlib import Path

    from .checkpoint import load_checkpoint
    from ..flags import overrides as config_overrides, preset_of
    from ..presets import PRESETS, SHAPES_PRESETS, create
    overrides = config_overrides(args)
    if args.checkpoint:
        if overrides or args.preset or args.fusion:
            raise ValueError("--checkpoint fixes the configuration: leave out --preset, --fusion and config flags")
        model = load_checkpoint(args.checkpoint)
        name = Path(args.checkpoint).name
        classes = getattr(model, "meta", {}).get("classes")
    else:
        name = preset_of(args)
        if args.preset and args.preset not in PRESETS and args.preset not in SHAPES_PRESETS:
            raise ValueError(f"unknown preset {args.preset!r}; available: {sorted(PRESETS) + sorted(SHAPES_PRESETS)}")
        if args.fusion:
            overrides["fusion"] = args.fusion
        model = create(name, **overrides)
        classes = None
    source = export(model.eval(), name=name, command=_command(args), classes=classes)
    emit(source, check(source, model), args.out, "logits")


def emit(source: str, diff: float, out: str | None, what: str = "logits") -> None:
    """A checked export: refused if the file's `what` differ from the library's by more than 1e-5, else written
    to `out` (a line on stderr says so) or to stdout."""
    import sys
    from pathlib import Path
    if diff > 1e-5:
        raise ExportError(f"the exported file's {what} differ from the library's by {diff:.2e}: please report this")
    if out:
        Path(out).write_text(source)
        print(f"wrote {out}: {len(source.splitlines())} lines; loads the library's state_dict strictly, "
              f"{what} agree to {diff:.1e}", file=sys.stderr)
    else:
        sys.stdout.write(source)


__all__ = ["ExportError", "add_parser", "check", "code_command", "command_for", "emit", "export", "load"]
