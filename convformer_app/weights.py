"""Which weights a request runs, decided ONCE, as one kind of value: `resolve(controls, trained)` returns a
`Weights` (bundled, random, uploaded, trained in this session, or a published ImageNet reference) that says
what it is (`notice`, `meta`), loads its model (`load`), turns a picture into the model's input (`prepare`) and
says what inspection explains (`explains`). The weights notice, the one Run path (engine.run), the Compare tab
and the trust panel all read it; nothing else asks "bundled or random?" or "a timm model?".

A checkpoint's header is read at most once per file version. Weights never reach for the app's device or model
cache themselves: the engine hands them in.

A new weights choice: a `WEIGHTS` entry and a branch in `resolve` (a subclass of `Weights` when its models
are not ConvFormers built from a config, as `ReferenceWeights`).
"""
from __future__ import annotations

import functools
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import gradio as gr
import torch
from PIL import Image

from convformer import references as refs
from convformer.config import FUSIONS, ConvFormerConfig
from convformer.data import fit, preprocess
from convformer.export.checkpoint import CheckpointError, bundled_checkpoint, load_checkpoint, read_info
from convformer.messages import one_line
from convformer.model import ConvFormer
from convformer.presets import preset_name

from . import i18n, views
from .controls import ALL_PRESETS, Controls, hparams
from .i18n import text
from .views import clean

WEIGHTS = {"bundled": "Bundled checkpoint (trained)", "random": "Random initialisation",
           "upload": "My checkpoint (.safetensors)", "trained": "Trained in this session (Train tab)",
           "imagenet": "Pretrained on ImageNet"}  # a published timm model per stage (`ReferenceWeights`)
ATTENTION_BUDGET = int(os.environ.get("CONVFORMER_ATTENTION_BUDGET", 128 * 2**20))  # floats kept per request


@dataclass
class Loaded:
    """A built model on its device and its class names; `lock`: inspect() hooks the model, one at a time."""
    model: torch.nn.Module
    classes: list[str]
    lock: threading.Lock = field(default_factory=threading.Lock)


@dataclass(frozen=True)
class Prepared:
    """A picture as a model takes it."""
    x: torch.Tensor                  # (1, C, H, W), normalised
    display: Image.Image             # the picture the maps are drawn over (what the model sees, before scaling)
    note: str = ""                   # how the picture was fitted, in the page's language ("" when nothing to say)


@dataclass(frozen=True)
class Weights:
    """The weights a request runs: a ConvFormer, random or from a checkpoint. `config` is the architecture the
    checkpoint was saved with (None for random weights: the controls decide); `problem` says why they cannot
    be used (None: they can)."""
    kind: str                                   # bundled | random | upload | trained | imagenet (WEIGHTS)
    notice: str                                 # what the page says about them, before anything runs
    path: Path | None = None
    stamp: tuple = ()                           # (path, size, mtime): the file version, for the model cache
    config: ConvFormerConfig | None = None
    meta: dict[str, Any] = field(default_factory=dict)
    problem: str | None = None
    preset: str | None = None                   # what the checkpoint is: a preset's name, else its file name
    notes: tuple[str, ...] = ()                 # what the model's attention maps are, said beside them

    runs_convformer = True                      # a ConvFormer built from a config (its code, its trust panel)

    @property
    def fixes_architecture(self) -> bool:
        """Bundled and trained checkpoints run as they were saved; the controls only show them."""
        return self.kind in ("bundled", "trained") and self.config is not None

    def controls(self, controls: Controls) -> Controls:
        """`controls` with the hyperparameters this checkpoint fixes (unchanged for random weights)."""
        if self.config is None:
            return controls
        return controls.replace(fusion=self.config.fusion, preset=self.preset or controls.preset, **hparams(self.config))

    def model_config(self, controls: Controls) -> ConvFormerConfig:
        """The architecture a request runs: the checkpoint's when it fixes it, else the controls' (with what an
        uploaded checkpoint says about classes, pooling and normalisation). Checked against the budget."""
        if self.problem:
            raise gr.Error(self.problem)
        if self.fixes_architecture:
            return self.config
        cfg = controls.config()
        if self.kind == "upload":
            s = self.config
            cfg = cfg.replace(num_classes=s.num_classes, pool=s.pool, mean=s.mean, std=s.std, in_chans=s.in_chans)
        check_budget(cfg)
        return cfg

    def fetch(self, progress: Callable | None = None) -> None:
        """Make sure the weights are on this machine (nothing to do for a ConvFormer's)."""

    def load(self, controls: Controls, device: torch.device, cache) -> Loaded:
        """The model the controls ask for with these weights, from `cache` (engine.ModelCache) when built before."""
        return self.build(self.model_config(controls), device, cache)

    def build(self, cfg: ConvFormerConfig, device: torch.device, cache) -> Loaded:
        """The model for these weights and a config (see model_config), from `cache` when built before."""
        if self.kind == "random":
            def build_random() -> Loaded:
                with torch.random.fork_rng(devices=[]):  # seeded without touching other requests' random state
                    torch.manual_seed(0)  # the same random model for the same config, so results are repeatable
                    model = ConvFormer(cfg).to(device).eval()
                return Loaded(model, numbered(cfg.num_classes))
            return cache.get(("random", repr(cfg), str(device)), build_random)

        def build() -> Loaded:
            try:
                model = load_checkpoint(self.path, cfg if self.kind == "upload" else None, device=device)
            except CheckpointError as e:
                if self.kind != "upload":
                    raise gr.Error(f"The {self.kind} checkpoint cannot be used: {clean(e)}") from None
                saved = ", ".join(f"{k}={v}" for k, v in {"fusion": self.config.fusion, **hparams(self.config)}.items())
                raise gr.Error(f"{clean(e)}. It was saved with {saved}: set these controls to load it.") from None
            return Loaded(model, list(model.meta.get("classes") or numbered(model.num_classes)))
        return cache.get((self.kind, self.stamp, repr(cfg) if self.kind == "upload" else "", str(device)), build)

    def prepare(self, image: Image.Image, model: torch.nn.Module, resize: str = "keep") -> Prepared:
        """The picture as the model's input: "keep" its aspect or "squash" it (convformer.data.fit)."""
        fitted = fit(image.size, model, resize)
        return Prepared(preprocess(image, model, resize), image,
                        i18n.text("stats.input", detail=i18n.translate(fitted.message())))

    def explains(self, model: torch.nn.Module, explained: int | str) -> tuple[int | str | None, int | str | None]:
        """(the class Grad-CAM explains, the class relevance explains): None where the model has no conv
        layer, or no attention."""
        return (explained if model.config.uses_conv else None, explained if model.config.uses_transformer else None)

    def fusion(self, model: torch.nn.Module) -> str:
        """The fusion stage the model stands for."""
        return model.config.fusion


@dataclass(frozen=True)
class ReferenceWeights(Weights):
    """The weights choice "Pretrained on ImageNet": a fusion stage's published timm reference
    (convformer.references), through the same inspection and the same Run as our own models, with its own
    preprocessing (timm's data config) and its own ImageNet classes.

    Weights are fetched into the Hugging Face cache on the request's own thread, so the page's progress bar
    follows the download (gr.Progress(track_tqdm=True) reads huggingface_hub's tqdm bar; the start of each
    download is also said in words); everything after that reads the cache. An unreachable Hub with nothing
    cached is one line on the page within seconds, and every other weights choice keeps working."""
    runs_convformer = False

    def model_config(self, controls: Controls) -> ConvFormerConfig:
        raise gr.Error(self.problem or text("code.imagenet"))

    def fetch(self, progress: Callable | None = None) -> None:
        """Make sure the stage's weights are cached (the request's thread, for the progress bar); gr.Error when
        they cannot be had."""
        def said(name: str, size: int | None) -> None:
            if progress is not None:
                mb = text("refs.size", mb=f"{size / 1e6:.0f}") if size else ""
                progress(0, desc=text("refs.downloading", name=name, size=mb))
        try:
            refs.fetch(self.meta["fusion"], on_download=said)
        except refs.WeightsUnavailable as e:
            raise gr.Error(views.clean(e)) from None

    def load(self, controls: Controls, device: torch.device, cache) -> Loaded:
        """The stage's reference on `device`, built once (in `cache`); weights from the Hugging Face cache."""
        if self.problem:
            raise gr.Error(self.problem)
        fusion = self.meta["fusion"]

        def build() -> Loaded:
            try:
                model = refs.load_reference(fusion).to(device)
            except refs.WeightsUnavailable as e:
                raise gr.Error(views.clean(e)) from None
            return Loaded(model, list(refs.imagenet_labels()))
        return cache.get((self.kind, fusion, str(device)), build)

    def prepare(self, image: Image.Image, model: torch.nn.Module, resize: str = "keep") -> Prepared:
        """timm's resize and centre crop, whatever `resize` says (the reference was trained so)."""
        return Prepared(refs.preprocess(image, model), refs.view(image, model))

    def explains(self, model: torch.nn.Module, explained: int | str) -> tuple[int | str | None, int | str | None]:
        return (None if self.meta["fusion"] == "vit" else explained, explained)  # DeiT has no conv layer to explain

    def fusion(self, model: torch.nn.Module) -> str:
        return self.meta["fusion"]


def reference(fusion: str) -> ReferenceWeights:
    """The `imagenet` weights of a stage: what the notice says before anything runs."""
    ref = refs.REFERENCES.get(fusion)
    if ref is None:
        problem = f"fusion={fusion!r} is not allowed here: expected one of {tuple(refs.REFERENCES)}"
        return ReferenceWeights("imagenet", i18n.translate(problem), problem=problem)
    score = text("refs.top1", top1=f"{ref.top1:.1f}") if ref.top1 else text("refs.averaged")
    size = f"{refs.params(fusion) * 4 / 1e6:.0f}"  # float32 weights, MB
    where = text("refs.cached") if refs.is_cached(fusion) else text("refs.download_once", mb=size)
    notice = text("refs.notice", model=ref.label, title=text(f"refs.title.{fusion}"), score=score, where=where)
    return ReferenceWeights("imagenet", notice, meta={"fusion": fusion, "dataset": "imagenet", "reference": ref.label},
                            notes=(ref.attention,))


def check_budget(cfg: ConvFormerConfig) -> None:
    """The app keeps every block's attention maps (heads x N x N) of a request: refuse configs whose maps
    would not fit in ATTENTION_BUDGET floats, before anything is built."""
    if not cfg.uses_transformer:
        return
    h, w = cfg.grid_size()
    n = h * w + int(cfg.pool == "cls")
    floats = cfg.depth * cfg.num_heads * n * n
    if floats > ATTENTION_BUDGET:
        raise gr.Error(f"depth={cfg.depth} is not allowed here: {cfg.depth} blocks x {cfg.num_heads} heads x "
                       f"{n} x {n} tokens of attention maps ({floats * 4 / 2**30:.1f} GB) is more than this app "
                       f"shows ({ATTENTION_BUDGET * 4 / 2**30:.1f} GB); use fewer tokens (a larger stride or a "
                       "smaller image), blocks or heads")


def numbered(n: int) -> list[str]:
    return [f"class {i}" for i in range(n)]


def resolve(controls: Controls, trained: str | None = None) -> Weights:
    """The weights the controls choose; `trained` is this session's Train-tab checkpoint (a gr.State)."""
    kind, fusion = controls.weights, controls.fusion
    if kind not in WEIGHTS:
        return _problem(kind, f"weights={kind!r} is not allowed: expected one of {', '.join(WEIGHTS)}")
    if kind == "random":
        return _random("You chose random initialisation.")
    if kind == "imagenet":
        return reference(fusion)
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
