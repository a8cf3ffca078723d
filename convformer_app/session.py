"""The engine behind the app: controls -> validated config, weights -> a cached model, one inspection
pass -> a `Run` that holds what the pictures need.

Models are built or loaded once per (config, weights) in a small LRU cache. Every problem a person can
cause (a bad image, an impossible config, a checkpoint that does not fit) raises `gr.Error` with a message
and no server paths.
"""
from __future__ import annotations

import functools
import logging
import os
import re
import statistics
import threading
import time
import weakref
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import gradio as gr
import numpy as np
import torch
from PIL import Image

from . import ui_views as views
from . import viz
from .checkpoint import CheckpointError, bundled_checkpoint, load_checkpoint, read_info
from .config import FUSIONS, ConvFormerConfig, estimate
from .data import ImageError, load_image, pick_device, preprocess
from .inspection import ShapeRow, inspect
from .model import ConvFormer
from .presets import PRESETS

log = logging.getLogger(__name__)

HPARAMS = ("img_size", "embed_dim", "depth", "num_heads", "mlp_ratio", "patch_size", "conv_widths",
           "conv_depths", "merge")
WEIGHTS = {"bundled": "Bundled checkpoint (trained)", "random": "Random initialisation",
           "upload": "My checkpoint (.safetensors)", "trained": "Trained in this session (Train tab)"}
HEAD_FUSIONS = ("mean", "max", "min")
PREDICTED = "predicted class"
RANDOM_CLASSES = 10
ATTENTION_BUDGET = int(os.environ.get("CONVFORMER_ATTENTION_BUDGET", 128 * 2**20))  # floats kept per request
EXAMPLES = Path(__file__).resolve().parent.parent / "assets" / "examples"
DEVICE = pick_device()

try:  # Hugging Face ZeroGPU: the GPU is attached only inside functions decorated with spaces.GPU
    import spaces
    gpu: Callable = spaces.GPU
except ImportError:
    def gpu(fn: Callable) -> Callable:
        return fn


def set_device(name: str | None) -> torch.device:
    """Pick the device once at start: an explicit name, else CUDA, then MPS, then CPU."""
    global DEVICE
    DEVICE = pick_device(name)
    return DEVICE


def _save_pil_to_cache(img: Image.Image, cache_dir: str, name: str = "image", format: str = "webp") -> str:
    """Gradio's output-picture cache, written atomically. Gradio 6.31 names a picture by its content hash and
    REWRITES that file in place on every request, so while two sessions get the same picture (the same example,
    the same seeded random model) one of them can download it half-written or empty. Here an existing file is
    kept and a new one appears whole (written beside it, then renamed)."""
    data = gr.processing_utils.encode_pil_to_bytes(img, format)
    folder = Path(cache_dir) / gr.processing_utils.hash_bytes(data)
    folder.mkdir(parents=True, exist_ok=True)
    path = (folder / f"{name}.{format}").resolve()
    if not path.is_file() or path.stat().st_size != len(data):
        part = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.part")
        part.write_bytes(data)
        os.replace(part, path)
    return str(path)


gr.processing_utils.save_pil_to_cache = _save_pil_to_cache  # read through the module by gradio.image_utils


# ---- configuration --------------------------------------------------------------------------------------
def presets_for(fusion: str) -> list[str]:
    return [name for name, cfg in PRESETS.items() if cfg.fusion == fusion]


def _int(name: str, value: Any) -> int:
    try:
        number = float(value)
    except (TypeError, ValueError, OverflowError):
        number = float("nan")
    if not number.is_integer():
        raise gr.Error(f"{name}={value!r} is not allowed: expected a whole number")
    return int(number)


def _ints(name: str, value: Any) -> tuple[int, ...]:
    items = re.split(r"[,\s]+", value.strip()) if isinstance(value, str) else list(value or ())
    items = [i for i in items if i != ""]
    if not items:
        raise gr.Error(f"{name} is empty: expected numbers separated by commas, e.g. 32, 64, 128")
    return tuple(_int(name, i) for i in items)


def make_config(fusion: str, preset: str, img_size: Any, embed_dim: Any, depth: Any, num_heads: Any,
                mlp_ratio: Any, patch_size: Any, conv_widths: Any, conv_depths: Any, merge: str,
                num_classes: int = RANDOM_CLASSES) -> ConvFormerConfig:
    """The validated config the controls describe. The preset supplies what the controls do not show
    (pool, mean, std); a preset of another fusion stage is replaced by that stage's tiny one."""
    if fusion not in FUSIONS:
        raise gr.Error(f"fusion={fusion!r} is not allowed: expected one of {', '.join(FUSIONS)}")
    base = PRESETS[preset] if str(preset) in PRESETS and PRESETS[preset].fusion == fusion else \
        PRESETS[f"convformer_{fusion}_tiny"]
    try:
        ratio = float(mlp_ratio)
    except (TypeError, ValueError, OverflowError):
        raise gr.Error(f"mlp_ratio={mlp_ratio!r} is not allowed: expected a number") from None
    try:
        cfg = base.replace(
            img_size=_int("img_size", img_size), embed_dim=_int("embed_dim", embed_dim), depth=_int("depth", depth),
            num_heads=_int("num_heads", num_heads), mlp_ratio=ratio, patch_size=_int("patch_size", patch_size),
            conv_widths=_ints("conv_widths", conv_widths), conv_depths=_ints("conv_depths", conv_depths),
            merge=merge, num_classes=num_classes)
    except (ValueError, TypeError) as e:
        raise gr.Error(str(e)) from None
    check_attention_budget(cfg)
    return cfg


def check_attention_budget(cfg: ConvFormerConfig) -> None:
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


def controls_of(cfg: ConvFormerConfig) -> dict[str, Any]:
    """The hyperparameter control values that describe `cfg`."""
    return {"img_size": cfg.img_size[0], "embed_dim": cfg.embed_dim, "depth": cfg.depth,
            "num_heads": cfg.num_heads, "mlp_ratio": cfg.mlp_ratio, "patch_size": cfg.patch_size,
            "conv_widths": ", ".join(map(str, cfg.conv_widths)),
            "conv_depths": ", ".join(map(str, cfg.conv_depths)), "merge": cfg.merge}


def _bundled_config(fusion: str) -> ConvFormerConfig | None:
    path = bundled_checkpoint(fusion)
    try:
        return ConvFormerConfig.from_dict(read_info(path)["config"]) if path else None
    except (ValueError, TypeError, KeyError):
        return None


def defaults(fusion: str, preset: str | None = None, weights: str = "bundled") -> dict[str, Any]:
    """Control values for a fusion stage: the bundled checkpoint's architecture when that is what will run,
    else the preset's."""
    cfg = _bundled_config(fusion) if weights == "bundled" else None
    preset = preset if preset in presets_for(fusion) else f"convformer_{fusion}_tiny"
    return {"fusion": fusion, "preset": preset, "weights": weights, **controls_of(cfg or PRESETS[preset])}


def check_config(fusion: str, preset: str, img_size: Any, embed_dim: Any, depth: Any, num_heads: Any,
                 mlp_ratio: Any, patch_size: Any, conv_widths: Any, conv_depths: Any, merge: str,
                 weights: str = "bundled") -> str:
    """A one-line verdict on the controls, shown next to them: what the model will be, or what is wrong."""
    if weights == "trained":
        return ("✓ The model trained in this session (Train tab) fixes the architecture; the controls show it "
                "after training.")
    if weights == "bundled" and bundled_checkpoint(fusion):
        return (f"✓ The bundled **{fusion}** checkpoint fixes the architecture (its hyperparameters are shown "
                "above when you pick the stage). Choose *Random initialisation* to try your own.")
    try:
        cfg = make_config(fusion, preset, img_size, embed_dim, depth, num_heads, mlp_ratio, patch_size,
                          conv_widths, conv_depths, merge)
    except gr.Error as e:
        return f"⚠ **This combination is impossible:** {e.message}"
    params, tokens, _ = estimate(cfg)
    grid = f", {cfg.grid_size()[0]} x {cfg.grid_size()[1]} = {tokens} tokens" if cfg.uses_transformer else ""
    return f"✓ {fusion} fusion, about {views.human(params)} parameters{grid}."


# ---- weights and the model cache ------------------------------------------------------------------------
@dataclass
class Loaded:
    model: ConvFormer
    kind: str                  # bundled | random | upload
    classes: list[str]
    notice: str                # what the weights are, for the page
    lock: threading.Lock = field(default_factory=threading.Lock)  # inspect() hooks the model: one at a time


class ModelCache:
    """At most `size` models, least recently used dropped first; a model is built once per key."""

    def __init__(self, size: int = 4):
        self.size, self.builds = size, 0
        self._items: OrderedDict[tuple, Loaded] = OrderedDict()
        self._lock, self._build_lock = threading.Lock(), threading.Lock()

    def get(self, key: tuple, build: Callable[[], Loaded]) -> Loaded:
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
                return self._items[key]
        with self._build_lock:  # one build at a time: each key once, and seeded init is not interleaved
            with self._lock:
                if key in self._items:
                    return self._items[key]
            item = build()  # outside self._lock: a slow build does not block cached requests
            with self._lock:
                self._items[key] = item
                while len(self._items) > self.size:
                    self._items.popitem(last=False)
                self.builds += 1
        return item

    def clear(self) -> None:
        with self._lock:
            self._items.clear()


CACHE = ModelCache(int(os.environ.get("CONVFORMER_MODEL_CACHE", "4")))


def _stamp(path: Path) -> tuple:
    stat = path.stat()
    return str(path), stat.st_size, stat.st_mtime_ns


def load(cfg: ConvFormerConfig, weights: str, checkpoint: str | None = None) -> Loaded:
    """The model for a config and a weights choice, from the cache when it was built before."""
    if weights not in WEIGHTS:
        raise gr.Error(f"weights={weights!r} is not allowed: expected one of {', '.join(WEIGHTS)}")
    if weights == "upload":
        return _load_upload(cfg, checkpoint)
    if weights == "trained":
        return load_trained(checkpoint)
    path = bundled_checkpoint(cfg.fusion) if weights == "bundled" else None
    if path is not None:
        def build() -> Loaded:
            model = load_checkpoint(path, device=DEVICE)
            classes = list(model.meta.get("classes") or _numbered(model.num_classes))
            return Loaded(model, "bundled", classes, views.weights_notice("bundled", model.meta, path.name))
        return CACHE.get(("bundled", _stamp(path), str(DEVICE)), build)
    reason = (f"No trained checkpoint is bundled for **{cfg.fusion}** fusion yet, so it runs with random "
              "initialisation." if weights == "bundled" else "You chose random initialisation.")

    def build_random() -> Loaded:
        with torch.random.fork_rng(devices=[]):  # seeded without touching other requests' random state
            torch.manual_seed(0)  # the same random model for the same config, so results are repeatable
            model = ConvFormer(cfg).to(DEVICE).eval()
        return Loaded(model, "random", _numbered(cfg.num_classes), views.weights_notice("random", {}, "", reason))
    return CACHE.get(("random", repr(cfg), str(DEVICE), reason), build_random)


def _load_upload(cfg: ConvFormerConfig, checkpoint: str | None) -> Loaded:
    if not checkpoint:
        raise gr.Error("Upload a .safetensors checkpoint first, or choose other weights.")
    path = Path(checkpoint)
    if path.suffix.lower() != ".safetensors":
        raise gr.Error("Only .safetensors checkpoints are accepted (pickled .pt / .pth / .bin files can run "
                       "code when loaded, so they are refused).")
    try:
        info = read_info(path)
        stored = ConvFormerConfig.from_dict(info["config"])
    except (CheckpointError, ValueError, TypeError, KeyError) as e:
        raise gr.Error(f"This checkpoint cannot be used: {_clean(e)}") from None
    # what the controls do not set comes from the checkpoint: classes, pooling, normalisation
    cfg = cfg.replace(num_classes=stored.num_classes, pool=stored.pool, mean=stored.mean, std=stored.std,
                      in_chans=stored.in_chans)

    def build() -> Loaded:
        try:
            model = load_checkpoint(path, cfg, device=DEVICE)
        except CheckpointError as e:
            saved = ", ".join(f"{k}={v}" for k, v in {"fusion": stored.fusion, **controls_of(stored)}.items())
            raise gr.Error(f"{_clean(e)}. It was saved with {saved}: set these controls to load it.") from None
        classes = list(model.meta.get("classes") or _numbered(model.num_classes))
        return Loaded(model, "upload", classes, views.weights_notice("upload", model.meta, path.name))
    return CACHE.get(("upload", _stamp(path), repr(cfg), str(DEVICE)), build)


def load_trained(trained: str | None) -> Loaded:
    """This session's model from the Train tab (its checkpoint path is kept in the session's gr.State)."""
    if not trained or not Path(trained).is_file():
        raise gr.Error("Nothing has been trained in this browser session yet: train a model in the Train tab "
                       "first, or choose other weights.")
    path = Path(trained)

    def build() -> Loaded:
        try:
            model = load_checkpoint(path, device=DEVICE)
        except CheckpointError as e:
            raise gr.Error(f"The trained checkpoint cannot be used: {_clean(e)}") from None
        classes = list(model.meta.get("classes") or _numbered(model.num_classes))
        return Loaded(model, "trained", classes, views.weights_notice("trained", model.meta, path.name))
    return CACHE.get(("trained", _stamp(path), str(DEVICE)), build)


def _numbered(n: int) -> list[str]:
    return [f"class {i}" for i in range(n)]


def _clean(error: BaseException) -> str:
    """An error message without server paths."""
    return re.sub(r"(/[\w.\-]+){2,}/?", lambda m: Path(m.group(0)).name or "<path>", str(error))


# ---- one inspection pass --------------------------------------------------------------------------------
@dataclass
class Run:
    """One inspection, reduced to what the pictures need (small numpy arrays; kept in gr.State)."""
    display: Image.Image                          # the image as the model sees it, DISPLAY px on the long side
    fusion: str
    classes: list[str]
    probs: np.ndarray                             # (num_classes,)
    attentions: dict[str, np.ndarray]             # block -> (heads, N, N), float16
    grid: tuple[int, int, int] | None             # (h, w, prefix) of the transformer's tokens
    channels: dict[str, tuple[np.ndarray, np.ndarray, int]]  # conv stage -> (top maps, their indices, C)
    cam: dict[str, np.ndarray]                    # conv layer -> Grad-CAM (h, w) in [0, 1]
    cam_class: str | None
    shapes: list[ShapeRow]
    stats: str
    notice: str


_LATENCY: "weakref.WeakKeyDictionary[ConvFormer, dict[tuple, float]]" = weakref.WeakKeyDictionary()


@gpu
def _compute(model: ConvFormer, x: torch.Tensor, cam: int | str | None):
    """Inspect (one forward, plus the backward Grad-CAM needs). The latency of a plain forward pass is
    measured on the first request per (model, input shape, device) and then reused, so later requests do
    not pay for extra forwards. Only the model and tensors go in, so ZeroGPU can run this in its worker."""
    result = inspect(model, x, cam_class=cam)
    key = (tuple(x.shape), x.dtype, str(x.device))
    latency = _LATENCY.setdefault(model, {}).get(key)
    if latency is None:
        times = []
        with torch.inference_mode():
            while len(times) < 5 and sum(times) < 0.5:
                start = time.perf_counter()
                model(x)
                if x.device.type == "cuda":
                    torch.cuda.synchronize()
                times.append(time.perf_counter() - start)
        latency = _LATENCY[model][key] = statistics.median(times) * 1000
    return result, latency


def run(image: str | None, fusion: str = "mid", preset: str = "convformer_mid_tiny", img_size: Any = 224,
        embed_dim: Any = 192, depth: Any = 4, num_heads: Any = 3, mlp_ratio: Any = 4.0, patch_size: Any = 16,
        conv_widths: Any = "32, 64, 128, 192", conv_depths: Any = "1, 1, 2, 2", merge: str = "concat",
        weights: str = "bundled", checkpoint: str | None = None, cam_target: str = PREDICTED,
        trained: str | None = None) -> Run:
    """Decode the image, get the model, inspect once, keep what the pictures need."""
    if not image:
        raise gr.Error("Upload an image first (or pick an example).")
    try:
        picture = load_image(image)
    except ImageError as e:
        raise gr.Error(f"This image cannot be used: {_clean(e)}") from None
    if weights == "trained":  # the checkpoint fixes the architecture
        loaded = load_trained(trained)
    else:
        if weights == "bundled" and fusion in FUSIONS and bundled_checkpoint(fusion) is not None:
            cfg = PRESETS[f"convformer_{fusion}_tiny"]  # only its fusion is read: the checkpoint fixes the rest
        else:
            cfg = make_config(fusion, preset, img_size, embed_dim, depth, num_heads, mlp_ratio, patch_size,
                              conv_widths, conv_depths, merge)
        loaded = load(cfg, weights, checkpoint)
    model = loaded.model
    cam: int | str | None = "pred" if model.config.uses_conv else None
    if cam is not None and cam_target in loaded.classes:
        cam = loaded.classes.index(cam_target)
    try:
        x = preprocess(picture, model)
        with loaded.lock:  # inspect() hooks the model: one request at a time per model
            result, latency = _compute(model, x, cam)
    except torch.OutOfMemoryError:
        raise gr.Error("The model ran out of memory on this device: choose a smaller configuration.") from None
    branch, tg = next(iter(result.token_grid.items()), (None, None))
    acts = {}
    for stage, act in result.activations.items():
        a = viz.to_numpy(act[0])
        top = viz.top_channels(a, 16)
        acts[stage] = (a[top], top, a.shape[0])
    cam_class = None
    if result.cam_class is not None:
        cam_class = loaded.classes[int(result.cam_class[0])]
    size = model.config.img_size
    return Run(display=views.display_image(picture, size), fusion=model.config.fusion, classes=loaded.classes,
               probs=result.probs[0].float().cpu().numpy(),
               attentions={k: viz.to_numpy(v[0]).astype(np.float16) for k, v in result.attentions.items()},
               grid=(tg.h, tg.w, tg.prefix) if tg else None, channels=acts,
               cam={k: viz.to_numpy(v[0]) for k, v in result.cam.items()}, cam_class=cam_class,
               shapes=result.shapes,
               stats=views.stats_markdown(result.params, result.flops, latency, _device_name(), size),
               notice=loaded.notice)


def _device_name() -> str:
    if DEVICE.type == "cuda":
        return f"cuda ({torch.cuda.get_device_name(DEVICE)})"
    return DEVICE.type


# Handlers run on ONE thread of their own. torch's OpenMP threads belong to the thread that starts them: run
# from Gradio's pool of worker threads, each handler thread would start its own set, and on a small CPU those
# sets spin against each other (the 224 px mid model: 45 ms a request from one thread, 60 ms once a second
# thread had run it; benchmarks/NOTES.md). The model work is serialised anyway (one inspection per model at
# a time) and uses every core by itself; Gradio's own work for other requests goes on meanwhile.
MODEL_THREAD = ThreadPoolExecutor(1, thread_name_prefix="convformer-model")


def on_model_thread(fn: Callable, *args, **kwargs):
    """fn(*args, **kwargs) on MODEL_THREAD (directly when already there); its result or its exception."""
    if threading.current_thread().name.startswith("convformer-model"):
        return fn(*args, **kwargs)
    return MODEL_THREAD.submit(fn, *args, **kwargs).result()


def guard(fn: Callable) -> Callable:
    """Wrap a handler so that it runs on MODEL_THREAD and an unexpected failure becomes a short message,
    never a traceback."""
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return on_model_thread(fn, *args, **kwargs)
        except gr.Error:
            raise
        except Exception as e:  # noqa: BLE001 - any failure in a handler (a model's forward, a full disk)
            log.exception("handler %s failed", fn.__name__)
            raise gr.Error(f"Something went wrong ({type(e).__name__}): {_clean(e)}. The server is fine; "
                           "try another image or configuration.") from None
    return wrapper
