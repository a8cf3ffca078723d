"""Checkpoints as safetensors (never pickle): weights, plus the config and metadata as JSON, both in the
safetensors header and in a readable `.json` file beside it."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from .config import ConvFormerConfig
from .model import ConvFormer

MAX_BYTES = 1_000_000_000


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
    """The {"config": ..., "meta": ...} stored in a checkpoint's header, without loading weights."""
    path = resolve(path)
    if not path.is_file():
        raise CheckpointError(f"no checkpoint file at {path.name!r}")
    if path.stat().st_size > MAX_BYTES:
        raise CheckpointError(f"the checkpoint is larger than {MAX_BYTES / 1e9:.0f} GB")
    try:
        with safe_open(str(path), framework="pt") as f:
            header = f.metadata() or {}
    except (SafetensorError, OSError, ValueError) as e:
        raise CheckpointError(f"not a safetensors file, or its header is corrupt ({e})") from e
    if "convformer" not in header:
        raise CheckpointError("this safetensors file has no ConvFormer config in its header")
    try:
        info = json.loads(header["convformer"])
    except json.JSONDecodeError as e:
        raise CheckpointError("the ConvFormer config in the header is not valid JSON") from e
    meta = info.get("meta", {}) if isinstance(info, dict) else None
    if not isinstance(info, dict) or not isinstance(info.get("config"), dict) or not isinstance(meta, dict):
        raise CheckpointError('the header must hold {"config": {...}, "meta": {...}}')
    classes, metrics = meta.get("classes"), meta.get("metrics")
    if classes is not None and not (isinstance(classes, list) and all(isinstance(c, str) for c in classes)):
        raise CheckpointError("the class names in the header must be a list of strings")
    if metrics is not None and not isinstance(metrics, dict):
        raise CheckpointError("the metrics in the header must be a mapping")
    return info


def load_checkpoint(path: str | Path, config: ConvFormerConfig | None = None,
                    device: str | torch.device = "cpu") -> ConvFormer:
    """Rebuild the model saved at `path` (or `config`'s model, which must fit the weights).
    The metadata is on `model.meta`. Raises CheckpointError naming any mismatch."""
    path = resolve(path)
    info = read_info(path)
    if config is None:
        try:
            config = ConvFormerConfig.from_dict(info["config"])
        except (ValueError, TypeError, KeyError) as e:
            raise CheckpointError(f"the stored config is invalid: {e}") from e
    model = ConvFormer(config)
    expected = model.state_dict()
    try:
        with safe_open(str(path), framework="pt") as f:
            names = set(f.keys())
            problems = [f"missing {k}" for k in sorted(set(expected) - names)]
            problems += [f"unexpected {k}" for k in sorted(names - set(expected))]
            state = {}
            for k in sorted(names & set(expected)):
                shape = tuple(f.get_slice(k).get_shape())
                if shape != tuple(expected[k].shape):
                    problems.append(f"{k} has shape {shape}, the model needs {tuple(expected[k].shape)}")
                    continue
                tensor = f.get_tensor(k)
                if tensor.dtype.is_floating_point != expected[k].dtype.is_floating_point:
                    problems.append(f"{k} has dtype {tensor.dtype}, the model needs {expected[k].dtype}")
                    continue
                state[k] = tensor
    except (SafetensorError, OSError, ValueError, RuntimeError) as e:
        raise CheckpointError(f"the checkpoint's data is corrupt or truncated ({e})") from e
    if problems:
        shown = "; ".join(problems[:5]) + (f"; and {len(problems) - 5} more" if len(problems) > 5 else "")
        raise CheckpointError(f"the checkpoint does not fit this configuration: {shown}")
    classes = info.get("meta", {}).get("classes")
    if classes is not None and len(classes) != config.num_classes:
        raise CheckpointError(f"the checkpoint names {len(classes)} classes but its model has "
                              f"num_classes={config.num_classes}")
    model.load_state_dict(state)
    model.meta = info.get("meta", {})
    return model.to(device).eval()


BUNDLED = Path(__file__).resolve().parent.parent / "assets" / "checkpoints"


def bundled_checkpoint(fusion: str) -> Path | None:
    """The checkpoint shipped in assets/ for a fusion stage (trained on the built-in shapes data), if any."""
    path = BUNDLED / f"{fusion}.safetensors"
    return path if path.is_file() else None
