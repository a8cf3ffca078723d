"""Checkpoints as safetensors (never pickle): weights, plus the config and metadata as JSON, both in the
safetensors header and in a readable `.json` file beside it."""
from __future__ import annotations

import json
import math
import struct
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from ..config import LIMITS, ConvFormerConfig, estimate
from ..messages import one_line, shown
from ..model import ConvFormer

MAX_BYTES = 1_000_000_000        # the whole file
MAX_HEADER_BYTES = 16_000_000    # its JSON header (tensor table, config, metadata)
MAX_DEPTH = 16                   # nesting of the metadata's JSON
MAX_CONTAINERS = 10_000          # objects and lists in the ConvFormer JSON (counted before it is parsed)
MAX_VALUES = 250_000             # values in it (its commas, counted before it is parsed): 100,000 class names fit
MAX_NAME = 200                   # characters in one class name
INPUT_CHANNELS = (1, 3)          # what images are turned into: greyscale or RGB
STD_RANGE = (1e-3, 1e3)          # a normalisation std outside this makes every input saturate or vanish


class CheckpointError(ValueError):
    """A file that is not a usable ConvFormer checkpoint; the message names what does not fit."""


def save_checkpoint(model: ConvFormer, path: str | Path, **metadata: Any) -> Path:
    """Write `path` (.safetensors) and `path.json` with the config and metadata (class names, dataset,
    metrics, ...). Metadata must be JSON-serialisable."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    info = {"config": model.config.to_dict(), "meta": metadata}
    text = json.dumps(info, indent=2, default=list)
    state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    save_file(state, str(path), metadata={"convformer": text, "format": "pt"})
    path.with_suffix(".json").write_text(text + "\n")
    return path


def resolve(path: str | Path) -> Path:
    """A local path, or `hf://owner/repo/file.safetensors` downloaded from the Hugging Face Hub."""
    text = str(path)
    if text.startswith("hf://"):
        from huggingface_hub import hf_hub_download
        owner, repo, filename = text[5:].split("/", 2)
        return Path(hf_hub_download(f"{owner}/{repo}", filename))
    return Path(path)


def read_info(path: str | Path) -> dict[str, Any]:
    """The {"config": ..., "meta": ...} stored in a checkpoint's header, without loading weights. Everything
    the header declares is checked here, before anything is built: its size and nesting, the config (with
    its classifier in the parameter limit), what images it expects, the class names, and every tensor's
    name, shape and dtype against the model that config builds."""
    path = resolve(path)
    header = _header(path)
    if "convformer" not in header:
        raise CheckpointError("this safetensors file has no ConvFormer config in its header")
    _check_size(header["convformer"])
    try:
        info = json.loads(header["convformer"])
    except json.JSONDecodeError as e:
        raise CheckpointError("the ConvFormer config in the header is not valid JSON") from e
    except RecursionError as e:
        raise CheckpointError(f"the ConvFormer header is nested too deeply (the limit is {MAX_DEPTH} levels)") from e
    meta = info.get("meta", {}) if isinstance(info, dict) else None
    if not isinstance(info, dict) or not isinstance(info.get("config"), dict) or not isinstance(meta, dict):
        raise CheckpointError('the header must hold {"config": {...}, "meta": {...}}')
    if _depth(info) > MAX_DEPTH:
        raise CheckpointError(f"the ConvFormer header is nested too deeply (the limit is {MAX_DEPTH} levels)")
    config = stored_config(info)
    _check_meta(meta, config)
    problems = _tensor_problems(path, config)
    if problems:
        raise CheckpointError(f"the checkpoint does not fit the config in its own header: {problems}")
    return info


def stored_config(info: dict[str, Any]) -> ConvFormerConfig:
    """The config a checkpoint header declares, validated, and runnable on images here."""
    try:
        config = ConvFormerConfig.from_dict(info["config"])
    except (ValueError, TypeError, KeyError, RecursionError) as e:
        raise CheckpointError(f"the stored config is invalid: {one_line(str(e), 200)}") from e
    _check_runnable(config, "the checkpoint was saved with")
    return config


def load_checkpoint(path: str | Path, config: ConvFormerConfig | None = None,
                    device: str | torch.device = "cpu") -> ConvFormer:
    """Rebuild the model saved at `path` (or `config`'s model, which must fit the weights).
    The metadata is on `model.meta`. Raises CheckpointError naming any mismatch, before building."""
    path = resolve(path)
    info = read_info(path)
    saved = stored_config(info)
    if config is None:
        config = saved
    else:
        _check_runnable(config, "this configuration has")
        problems = _tensor_problems(path, config)
        if problems:
            raise CheckpointError(f"the checkpoint does not fit this configuration: it was saved with "
                                  f"{_differences(saved, config)}; {problems}")
    classes = info["meta"].get("classes")
    if classes is not None and len(classes) != config.num_classes:
        raise CheckpointError(f"the checkpoint names {len(classes)} classes but this configuration has "
                              f"num_classes={config.num_classes}")
    model = ConvFormer(config)
    try:
        with safe_open(str(path), framework="pt") as f:
            state = {k: f.get_tensor(k) for k in f.keys()}
    except (SafetensorError, OSError, ValueError, RuntimeError) as e:
        raise CheckpointError(f"the checkpoint's data is corrupt or truncated ({_short(e)})") from e
    try:
        model.load_state_dict(state)
    except RuntimeError as e:
        raise CheckpointError(f"the checkpoint does not fit this configuration: {_short(e)}") from e
    model.meta = info["meta"]
    return model.to(device).eval()


# ---- checks, each before the work it protects ------------------------------------------------------------
def _header(path: Path) -> dict[str, str]:
    """The safetensors metadata, after checking the file's size and its header's declared length."""
    if not path.is_file():
        raise CheckpointError(f"no checkpoint file at {shown(path.name)}")
    size = path.stat().st_size
    if size > MAX_BYTES:
        raise CheckpointError(f"the checkpoint is {size / 1e9:.1f} GB; the limit is {MAX_BYTES / 1e9:.0f} GB")
    with open(path, "rb") as f:
        start = f.read(8)
    if len(start) == 8 and struct.unpack("<Q", start)[0] > MAX_HEADER_BYTES:
        raise CheckpointError(f"not a safetensors file, or its header is too large: it declares "
                              f"{struct.unpack('<Q', start)[0]} bytes, the limit is {MAX_HEADER_BYTES / 1e6:.0f} MB")
    try:
        with safe_open(str(path), framework="pt") as f:
            return f.metadata() or {}
    except (SafetensorError, OSError, ValueError) as e:
        raise CheckpointError(f"not a safetensors file, or its header is corrupt ({_short(e)})") from e


def _check_size(text: str) -> None:
    """Refuse a ConvFormer JSON whose parsed form would be large for its bytes (millions of empty objects:
    6 MB of `{}` parse to ~150 MB and seconds of CPU), from counts of its characters, before parsing it."""
    containers = text.count("{") + text.count("[")
    if containers > MAX_CONTAINERS:
        raise CheckpointError(f"the ConvFormer header is nested too deeply or too large: it holds {containers} "
                              f"objects and lists; the limit is {MAX_CONTAINERS}")
    values = text.count(",")
    if values > MAX_VALUES:
        raise CheckpointError(f"the ConvFormer header holds {values} values; the limit is {MAX_VALUES}")


def _depth(value: Any) -> int:
    """Nesting depth of parsed JSON, without recursion."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        item, level = stack.pop()
        deepest = max(deepest, level)
        if level > MAX_DEPTH:
            break
        children = item.values() if isinstance(item, dict) else item if isinstance(item, list) else ()
        stack.extend((c, level + 1) for c in children)
    return deepest


def _check_runnable(config: ConvFormerConfig, who: str) -> None:
    """What a valid config may still get wrong for running on images here: its input channels, a
    normalisation that saturates every input, and its size with the classifier counted."""
    if config.in_chans not in INPUT_CHANNELS:
        raise CheckpointError(f"{who} in_chans={config.in_chans}; images here give 3 channels (RGB) or 1 "
                              "(greyscale)")
    lo, hi = STD_RANGE
    if not all(math.isfinite(v) and lo <= v <= hi for v in config.std):
        raise CheckpointError(f"{who} std={_numbers(config.std)}; each must be from {lo:g} to {hi:g}")
    if not all(math.isfinite(v) and abs(v) <= hi for v in config.mean):
        raise CheckpointError(f"{who} mean={_numbers(config.mean)}; each must be a number from {-hi:g} to {hi:g}")
    params = _params(config)
    if params > LIMITS["params"]:
        raise CheckpointError(f"{who} a model of {params / 1e6:.0f} M parameters ({config.num_classes} classes "
                              f"in its classifier); the limit is "
                              f"{LIMITS['params'] / 1e6:.0f} M")


def _check_meta(meta: dict[str, Any], config: ConvFormerConfig) -> None:
    classes, metrics = meta.get("classes"), meta.get("metrics")
    if classes is not None:
        if not (isinstance(classes, list) and all(isinstance(c, str) for c in classes)):
            raise CheckpointError("the class names in the header must be a list of strings")
        if len(classes) != config.num_classes:
            raise CheckpointError(f"the checkpoint names {len(classes)} classes but its model has "
                                  f"num_classes={config.num_classes}")
        long = next((i for i, c in enumerate(classes) if len(c) > MAX_NAME), None)
        if long is not None:
            raise CheckpointError(f"class name {long} in the header has {len(classes[long])} characters; the "
                                  f"limit is {MAX_NAME}")
    if metrics is not None and not isinstance(metrics, dict):
        raise CheckpointError("the metrics in the header must be a mapping")


def _skeleton(config: ConvFormerConfig) -> ConvFormer | None:
    """The model `config` builds, on the meta device: its tensors' shapes without their memory (None if the
    model's code cannot be built there, e.g. it reads a tensor's values while building)."""
    try:
        with torch.device("meta"):
            return ConvFormer(config)
    except (NotImplementedError, RuntimeError):
        return None


def _params(config: ConvFormerConfig) -> int:
    skeleton = _skeleton(config)
    if skeleton is not None:
        return sum(p.numel() for p in skeleton.parameters())
    features = {"cnn": config.conv_widths[-1], "late": config.conv_widths[-1] + config.embed_dim}
    return estimate(config)[0] + (features.get(config.fusion, config.embed_dim) + 1) * config.num_classes


def _tensor_problems(path: Path, config: ConvFormerConfig) -> str:
    """The tensors of the file that `config`'s model would not accept (names, shapes, float or not), read
    from the header only; '' when they all fit."""
    skeleton = _skeleton(config)
    if skeleton is None:  # checked after building instead (load_state_dict names what does not fit)
        return ""
    expected = skeleton.state_dict()
    try:
        with safe_open(str(path), framework="pt") as f:
            found = {k: (tuple(f.get_slice(k).get_shape()), f.get_slice(k).get_dtype()) for k in f.keys()}
    except (SafetensorError, OSError, ValueError, RuntimeError) as e:
        raise CheckpointError(f"the checkpoint's data is corrupt or truncated ({_short(e)})") from e
    if not found:
        return f"the file holds no tensors; the model needs {len(expected)}"
    problems = [f"missing {k}" for k in sorted(set(expected) - set(found))]
    problems += [f"unexpected {shown(k, 60)}" for k in sorted(set(found) - set(expected))]  # names from the file
    for k in sorted(set(found) & set(expected)):
        shape, dtype = found[k]
        if shape != tuple(expected[k].shape):
            problems.append(f"{k} has shape {shape}, the model needs {tuple(expected[k].shape)}")
        elif dtype.startswith(("F", "BF")) != expected[k].dtype.is_floating_point:
            problems.append(f"{k} has dtype {dtype}, the model needs {expected[k].dtype}")
    shown_ = "; ".join(problems[:5]) + (f"; and {len(problems) - 5} more" if len(problems) > 5 else "")
    return shown_


def _differences(saved: ConvFormerConfig, config: ConvFormerConfig) -> str:
    """The fields where `saved` differs from `config`: "fusion='late' (here 'mid'), depth=2 (here 4)"."""
    a, b = saved.to_dict(), config.to_dict()
    diff = [f"{k}={a[k]!r} (here {b[k]!r})" for k in a if k != "extra" and a[k] != b[k]]
    return ", ".join(diff) or "this same configuration"


def _numbers(values: tuple[float, ...]) -> str:
    return "(" + ", ".join(f"{v:.3g}" for v in values) + ")"


def _short(error: BaseException) -> str:
    return one_line(str(error), 160) or type(error).__name__


BUNDLED = Path(__file__).resolve().parents[1] / "weights"  # package data: in the wheel and `pip install .`


def bundled_checkpoint(fusion: str) -> Path | None:
    """The checkpoint shipped with the package (convformer/weights/) for a fusion stage (trained on the built-in shapes data), if any."""
    path = BUNDLED / f"{fusion}.safetensors"
    return path if path.is_file() else None
