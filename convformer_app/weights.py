"""Which weights a request runs, decided ONCE: `resolve(controls, trained)` reads the checkpoint header (at
most once per file version) and returns a `Weights` that the weights notice, the run and the Compare tab
all read. Nothing else asks "bundled or random?".

A new weights choice: a `WEIGHTS` entry, a branch in `resolve` (and, if its models are not checkpoints
on disk, one in engine.load).
"""
from __future__ import annotations

import functools
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from convformer.export.checkpoint import CheckpointError, bundled_checkpoint, read_info
from convformer.config import FUSIONS, ConvFormerConfig
from convformer.messages import one_line
from convformer.presets import preset_name

from . import i18n, views
from .controls import ALL_PRESETS, Controls, hparams
from .views import clean

WEIGHTS = {"bundled": "Bundled checkpoint (trained)", "random": "Random initialisation",
           "upload": "My checkpoint (.safetensors)", "trained": "Trained in this session (Train tab)",
           "imagenet": "Pretrained on ImageNet"}  # a published timm model per stage (convformer_app/references.py)


@dataclass(frozen=True)
class Weights:
    """The weights a request runs. `config` is the architecture the checkpoint was saved with (None for
    random weights: the controls decide); `problem` says why they cannot be used (None: they can)."""
    kind: str                                   # bundled | random | upload | trained
    notice: str                                 # what the page says about them, before anything runs
    path: Path | None = None
    stamp: tuple = ()                           # (path, size, mtime): the file version, for the model cache
    config: ConvFormerConfig | None = None
    meta: dict[str, Any] = field(default_factory=dict)
    problem: str | None = None
    preset: str | None = None                   # what the checkpoint is: a preset's name, else its file name

    @property
    def fixes_architecture(self) -> bool:
        """Bundled and trained checkpoints run as they were saved; the controls only show them."""
        return self.kind in ("bundled", "trained") and self.config is not None

    def controls(self, controls: Controls) -> Controls:
        """`controls` with the hyperparameters this checkpoint fixes (unchanged for random weights)."""
        if self.config is None:
            return controls
        return controls.replace(fusion=self.config.fusion, preset=self.preset or controls.preset, **hparams(self.config))


def resolve(controls: Controls, trained: str | None = None) -> Weights:
    """The weights the controls choose; `trained` is this session's Train-tab checkpoint (a gr.State)."""
    kind, fusion = controls.weights, controls.fusion
    if kind not in WEIGHTS:
        return _problem(kind, f"weights={kind!r} is not allowed: expected one of {', '.join(WEIGHTS)}")
    if kind == "random":
        return _random("You chose random initialisation.")
    if kind == "imagenet":
        from .references import weights as imagenet_weights
        return imagenet_weights(fusion)
    if kind == "bundled":
        path = bundled_checkpoint(fusion) if fusion in FUSIONS else None
        if path is None:
            return _random(f"No trained checkpoint is bundled for **{views.plain(fusion, 40)}** fusion yet, so it runs with "
                           "random initialisation.")
        return _checkpoint("bundled", path, "The bundled checkpoint cannot be used")
    if kind == "trained":
        if not trained or not Path(trained).is_file():
            return _problem(kind, "Nothing has been trained in this browser session yet: train a model in the "
                            "Train tab first, or choose other weights.")
        return _checkpoint("trained", Path(trained), "The trained checkpoint cannot be used")
    if not controls.checkpoint:
        return _problem(kind, "Upload a .safetensors checkpoint first, or choose other weights.")
    path = Path(controls.checkpoint)
    if path.suffix.lower() != ".safetensors":
        return _problem(kind, "Only .safetensors checkpoints are accepted (pickled .pt / .pth / .bin files can "
                        "run code when loaded, so they are refused).")
    return _checkpoint("upload", path, "This checkpoint cannot be used")


def defaults(fusion: str, preset: str | None = None, weights: str = "bundled") -> Controls:
    """The controls for a fusion stage: the bundled checkpoint's architecture when that is what will run,
    else the preset's (the stage's tiny one unless `preset` is one of its own)."""
    preset = preset if preset in ALL_PRESETS and ALL_PRESETS[preset].fusion == fusion else preset_name(fusion)
    start = Controls(fusion=fusion, preset=preset, weights=weights, **hparams(ALL_PRESETS[preset]))
    return resolve(start).controls(start) if weights == "bundled" else start


def _random(reason: str) -> Weights:
    """Random weights; `reason` is said in English here and in the page's language on the page."""
    return Weights("random", views.weights_notice("random", {}, "", i18n.translate(reason)))


def _problem(kind: str, message: str) -> Weights:
    message = i18n.translate(message)  # the page's language (English for the API)
    return Weights(kind, f"⚠ **{views.plain(message, 600)}**", problem=message)


def _checkpoint(kind: str, path: Path, cannot: str) -> Weights:
    try:
        stat = path.stat()
        stamp = (str(path), stat.st_size, stat.st_mtime_ns)
        info = _header(*stamp)
        config = ConvFormerConfig.from_dict(info["config"])
    except (OSError, CheckpointError, ValueError, TypeError, KeyError) as e:
        return _problem(kind, f"{cannot}: {clean(e)}")
    meta = dict(info.get("meta") or {})
    return Weights(kind, views.weights_notice(kind, meta, path.name), path, stamp, config, meta,
                   preset=preset_of(config) or f"{path.name} (checkpoint)")


def preset_of(config: ConvFormerConfig) -> str | None:
    """The preset (architecture or shapes) whose architecture `config` is, if any."""
    for name, preset in ALL_PRESETS.items():
        if preset.replace(num_classes=config.num_classes, img_size=config.img_size) == config:
            return name
    return None


@functools.lru_cache(maxsize=32)
def _header(path: str, size: int, mtime_ns: int) -> dict[str, Any]:
    """What the app reads of a checkpoint's header, read once per file version (size and mtime are part of
    the key): its config, class names, dataset name and the two scores the notice shows. The rest of the
    metadata is not kept (a header may hold up to 16 MB of it)."""
    info = read_info(path)
    meta = info.get("meta") or {}
    metrics = meta.get("metrics") if isinstance(meta.get("metrics"), dict) else {}
    dataset = meta.get("dataset")
    slim = {"classes": meta.get("classes"), "dataset": one_line(dataset, 200) if isinstance(dataset, str) else None,
            "metrics": {k: metrics[k] for k in ("test_acc", "val_acc") if isinstance(metrics.get(k), (int, float))}}
    return {"config": info["config"], "meta": {k: v for k, v in slim.items() if v}}
