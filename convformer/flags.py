"""The model flags of the command line, parsed in one place: which model (`--fusion`, `--preset`, `--checkpoint`)
and its configuration (`--img-size`, `--embed-dim`, ...: ConvFormerConfig fields as flags). Every
`python -m convformer` command that builds a ConvFormer (info, predict, train, code, detect, segment,
faithfulness) adds them here and reads
them back with `overrides` and `preset_of`."""
from __future__ import annotations

import argparse
from typing import Any

from .config import FUSIONS, MERGES, POOLS
from .presets import preset_name

# ConvFormerConfig field -> (type, nargs): what `--<field>` takes on the command line
CONFIG_FLAGS: dict[str, tuple[type, str | None]] = {
    "img_size": (int, "+"), "in_chans": (int, None), "num_classes": (int, None), "conv_widths": (int, "+"),
    "conv_depths": (int, "+"), "embed_dim": (int, None), "depth": (int, None), "num_heads": (int, None),
    "mlp_ratio": (float, None), "patch_size": (int, None), "pool": (str, None), "pos_embed": (str, None),
    "merge": (str, None), "drop_rate": (float, None), "attn_drop_rate": (float, None), "drop_path_rate": (float, None)}
CHOICES = {"pool": POOLS, "merge": MERGES}  # checked by argparse where a command asks (`checked`), else by the config
HELP = {"img_size": "one side, or H W", "conv_widths": "one stride-2 conv stage per width",
        "conv_depths": "residual blocks per conv stage (default: 1 each)"}


def flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def add_model_flags(p: argparse.ArgumentParser, *, fusion: str | None = "mid", fusion_help: str | None = None,
                    presets: list[str] | None = None, preset_help: str | None = "default: convformer_<fusion>_tiny",
                    checkpoint_help: str | None = "a .safetensors checkpoint instead of a preset",
                    more_fusions: tuple[str, ...] = ()) -> None:
    """--fusion (default `fusion`; a stage, or one of `more_fusions`, e.g. faithfulness's "all"), --preset (choices
    `presets`, or any name; left out when `preset_help` is None) and --checkpoint (left out when
    `checkpoint_help` is None)."""
    p.add_argument("--fusion", choices=(*FUSIONS, *more_fusions), default=fusion, help=fusion_help)
    if preset_help is not None:
        p.add_argument("--preset", choices=presets, help=preset_help)
    if checkpoint_help is not None:
        p.add_argument("--checkpoint", help=checkpoint_help)


def add_config_flags(p: argparse.ArgumentParser, names: tuple[str, ...] = tuple(CONFIG_FLAGS), *,
                     help: dict[str, str] | None = None, checked: bool = False) -> None:
    """`--<field>` for each ConvFormerConfig field in `names` (default: all of CONFIG_FLAGS); `checked`: argparse
    refuses a --pool or --merge outside CHOICES (else the config does, with its own message)."""
    texts = {**HELP, **(help or {})}
    for name in names:
        kind, nargs = CONFIG_FLAGS[name]
        p.add_argument(flag(name), type=kind, nargs=nargs, choices=CHOICES.get(name) if checked else None,
                       metavar="PX" if name == "img_size" else None, help=texts.get(name))


def overrides(args: argparse.Namespace, names: tuple[str, ...] = tuple(CONFIG_FLAGS)) -> dict[str, Any]:
    """The config fields the flags in `names` set (those given): lists as tuples, one --img-size as a side;
    --conv-widths without --conv-depths gives one block per stage."""
    out: dict[str, Any] = {}
    for name in names:
        value = getattr(args, name, None)
        if value is None:
            continue
        if isinstance(value, list):
            value = value[0] if name == "img_size" and len(value) == 1 else tuple(value)
        out[name] = value
    if "conv_widths" in out and "conv_depths" not in out:
        out["conv_depths"] = (1,) * len(out["conv_widths"])
    return out


def preset_of(args: argparse.Namespace) -> str:
    """The preset the flags name: --preset, else --fusion's tiny one (mid without either)."""
    return getattr(args, "preset", None) or preset_name(getattr(args, "fusion", None) or "mid")


__all__ = ["CONFIG_FLAGS", "add_config_flags", "add_model_flags", "flag", "overrides", "preset_of"]
