"""Task checkpoints (safetensors, never pickle) and `create_task_model`, which decides where weights come from.

A task checkpoint's header holds {"task", "config" (the backbone's ConvFormerConfig), "head" (HeadConfig),
"meta" (class names, metrics, training record)} under the key "convformer_task", and the same JSON beside it.
The bundled ones live in `convformer/weights/{task}_{fusion}.safetensors` (package data, with the classifiers).
"""
from __future__ import annotations

import json
import struct
import warnings
from pathlib import Path
from typing import Any

from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file

from ..export.checkpoint import CheckpointError
from ..config import FUSIONS, ConvFormerConfig
from ..messages import shown
from .model import HEADS, TASKS, HeadConfig, TaskModel, split_overrides

WEIGHTS_DIR = Path(__file__).resolve().parent.parent / "weights"  # package data, beside the classifiers'
KEY = "convformer_task"
MAX_BYTES, MAX_HEADER_BYTES = 500_000_000, 16_000_000


def bundled_task_checkpoint(task: str, fusion: str, head: str = "") -> Path | None:
    """The bundled checkpoint of a task and fusion stage (`head`: a non-default head's own file), if any."""
    path = WEIGHTS_DIR / f"{task}_{fusion}{'_' + head if head else ''}.safetensors"
    return path if path.is_file() else None


def save_task_checkpoint(model: TaskModel, path: str | Path, *, half: bool = False, **meta: Any) -> Path:
    """Write `path` (.safetensors) and `path.json`: weights, backbone and head configs, metadata. `half`: store
    the floating-point tensors as float16 (half the file; loading upcasts them to the model's float32)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps({"task": model.task, "config": model.config.to_dict(), "head": model.head_config.to_dict(),
                       "meta": {**meta, "stored_dtype": "float16" if half else "float32"}}, indent=2, default=list)
    state = {k: (v.half() if half and v.is_floating_point() else v).detach().contiguous().cpu()
             for k, v in model.state_dict().items()}
    save_file(state, str(path), metadata={KEY: text, "format": "pt"})
    path.with_suffix(".json").write_text(text + "\n")
    return path


def read_task_info(path: str | Path) -> dict[str, Any]:
    """The header of a task checkpoint, checked: size, JSON, task. Raises CheckpointError in one line."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"no checkpoint file at {shown(path.name)}")
    if path.stat().st_size > MAX_BYTES:
        raise CheckpointError(f"the checkpoint is over the {MAX_BYTES / 1e6:.0f} MB limit of a task checkpoint")
    with open(path, "rb") as f:
        start = f.read(8)
    if len(start) < 8 or struct.unpack("<Q", start)[0] > MAX_HEADER_BYTES:
        raise CheckpointError("not a safetensors file, or its header is too large")
    try:
        with safe_open(str(path), framework="pt") as f:
            header = f.metadata() or {}
    except (SafetensorError, OSError, ValueError) as e:
        raise CheckpointError("not a safetensors file, or its header is corrupt") from e
    if KEY not in header:
        if "convformer" in header:
            raise CheckpointError("this is a classification checkpoint (task 'classify'), not a detect or segment "
                                  "one; train one with `python -m convformer train --task detect|segment`")
        raise CheckpointError("this safetensors file has no ConvFormer task header")
    try:
        info = json.loads(header[KEY])
    except (json.JSONDecodeError, RecursionError) as e:
        raise CheckpointError("the task header is not valid JSON") from e
    if not isinstance(info, dict) or info.get("task") not in TASKS[1:] or not isinstance(info.get("config"), dict) \
            or not isinstance(info.get("head"), dict):
        raise CheckpointError('the task header must hold {"task": "detect" | "segment", "config", "head", "meta"}')
    return info


def load_task_checkpoint(path: str | Path, task: str | None = None) -> TaskModel:
    """A TaskModel from a task checkpoint; `task` set: a checkpoint of another task raises CheckpointError."""
    info = read_task_info(path)
    if task is not None and info["task"] != task:
        raise CheckpointError(f"this is a {info['task']} checkpoint; the {task} task needs a {task} checkpoint")
    try:
        model = TaskModel(ConvFormerConfig.from_dict(info["config"]), HeadConfig(**info["head"]))
    except (TypeError, ValueError) as e:
        raise CheckpointError(f"the checkpoint's config is not usable: {e}") from e
    try:
        model.load_state_dict(load_file(str(path)))
    except (RuntimeError, SafetensorError) as e:
        raise CheckpointError("the checkpoint's tensors do not fit the model its header describes") from e
    model.meta = info.get("meta", {}) if isinstance(info.get("meta"), dict) else {}
    return model.eval()


def _backbone_config(fusion: str, overrides: dict[str, Any]) -> ConvFormerConfig:
    from ..presets import SHAPES_PRESETS, preset_name
    return SHAPES_PRESETS[preset_name(fusion, "shapes")].replace(num_classes=0, **overrides)


def _load_backbone(model: TaskModel, fusion: str) -> bool:
    """The bundled classifier's weights (trained on the shapes images) into the backbone, when they fit."""
    from ..export.checkpoint import bundled_checkpoint, load_checkpoint
    path = bundled_checkpoint(fusion)
    if path is None:
        return False
    state = {k: v for k, v in load_checkpoint(path).state_dict().items() if not k.startswith("head.")}
    own = model.backbone.state_dict()
    if any(k not in own or own[k].shape != v.shape for k, v in state.items()):
        return False
    model.backbone.load_state_dict(state, strict=False)
    return True


def create_task_model(task: str, fusion: str = "mid", *, weights: str | Path = "bundled", **config: Any):
    """A model for `task` on a `fusion` backbone. weights: "bundled" (the shipped checkpoint of the task and
    stage; without one, a warning and what "backbone" gives), "backbone" (the bundled shapes classifier's
    backbone, a new head: where training starts), "random", or a path to a task checkpoint. `config`: head
    fields (HeadConfig) and backbone fields (ConvFormerConfig overrides of the stage's shapes preset).
    task "classify" gives the classifier itself (a ConvFormer) with the same weights choices."""
    if task not in TASKS:
        raise ValueError(f"task={task!r} is not allowed: expected one of {TASKS}")
    if fusion not in FUSIONS:
        raise ValueError(f"fusion={fusion!r} is not allowed: expected one of {FUSIONS}")
    if task == "classify":
        return _classifier(fusion, weights, config)
    if weights not in ("bundled", "backbone", "random"):
        return load_task_checkpoint(weights, task)
    head_fields, backbone_fields = split_overrides(config)
    head = HeadConfig(task=task, **head_fields)
    if weights == "bundled":
        path = bundled_task_checkpoint(task, fusion, "" if head.head == HEADS[task][0] else head.head)
        if path is not None and not {k for k in config if k != "head"}:  # naming a head picks that head's file
            return load_task_checkpoint(path, task)
        which = f"{head.head}-head {task}" if head.head != HEADS[task][0] else task
        warnings.warn(f"no bundled {which} checkpoint for {fusion!r}{' with these settings' if path else ''}; "
                      "the head has random weights", stacklevel=2)
    model = TaskModel(_backbone_config(fusion, backbone_fields), head)
    if weights != "random" and not backbone_fields:
        model.meta["backbone"] = "bundled shapes classifier" if _load_backbone(model, fusion) else "random"
    return model.eval()


def _classifier(fusion: str, weights: str | Path, config: dict[str, Any]):
    from ..export.checkpoint import load_checkpoint
    from ..presets import create, preset_name
    if weights in ("bundled", "backbone", "random"):
        model = create(preset_name(fusion, "shapes"), pretrained=weights != "random", **config)
    else:
        model = load_checkpoint(weights)
    model.task = "classify"
    return model.eval()
