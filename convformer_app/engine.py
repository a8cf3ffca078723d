"""The engine behind the app: the device, the model thread, a small model cache, and one inspection pass
per request kept as a `Run` (what the pictures need).

Nothing happens at import: `start()` (called by app.py's launch) picks the device and installs Gradio's
atomic picture cache. Every problem a person can cause (a bad image, an impossible config, a checkpoint
that does not fit) raises `gr.Error` with a message and no server paths.
"""
from __future__ import annotations

import contextvars
import functools
import logging
import os
import threading
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import gradio as gr
import numpy as np
import torch
from PIL import Image

from convformer.inspection import viz
from convformer.config import ConvFormerConfig
from convformer.data import RESIZES, ImageError, load_image, pick_device
from convformer.inspection import ShapeRow, conv_layers, inspect
from convformer.model import ConvFormer
from convformer.timing import Latency, forward_latency

from . import gradio_patches, views
from .controls import Controls
from .views import clean
from .weights import Loaded, Weights

log = logging.getLogger(__name__)

PREDICTED = "predicted class"
EXAMPLES = Path(__file__).resolve().parent.parent / "assets" / "examples"
DECODE_SIDE = 2048  # uploads are decoded reduced to this side: more than any model input or picture needs
DEVICE = torch.device("cpu")  # until start()

try:  # Hugging Face ZeroGPU: the GPU is attached only inside functions decorated with spaces.GPU
    import spaces
    gpu: Callable = spaces.GPU
except ImportError:
    def gpu(fn: Callable) -> Callable:
        return fn


# ---- start-up ------------------------------------------------------------------------------------------
def start(device: str | None = None) -> torch.device:
    """What the app does once at start, not at import: pick the device (an explicit name, else CUDA, then
    MPS, then CPU; ValueError for an unknown one) and make Gradio's output-picture cache atomic."""
    global DEVICE
    DEVICE = pick_device(device)
    gradio_patches.install_picture_cache()
    return DEVICE


def device_name() -> str:
    if DEVICE.type == "cuda":
        return f"cuda ({torch.cuda.get_device_name(DEVICE)})"
    return DEVICE.type


# ---- the model thread ----------------------------------------------------------------------------------
# Model work runs on ONE thread of its own. torch's OpenMP threads belong to the thread that starts them: run
# from Gradio's pool of worker threads, each handler thread would start its own set, and on a small CPU those
# sets spin against each other (the 224 px mid model: 45 ms a request from one thread, 60 ms once a second
# thread had run it; benchmarks/NOTES.md). The model work is serialised anyway (one inspection per model at
# a time) and uses every core by itself; Gradio's own work for other requests goes on meanwhile. Redraws
# from a kept Run need no model and do not queue behind it (`handled`).
MODEL_THREAD = ThreadPoolExecutor(1, thread_name_prefix="convformer-model")


def on_model_thread(fn: Callable, *args, **kwargs):
    """fn(*args, **kwargs) on MODEL_THREAD (directly when already there); its result or its exception."""
    if threading.current_thread().name.startswith("convformer-model"):
        return fn(*args, **kwargs)
    # in the caller's context: Gradio finds the request's progress bar (gr.Progress, track_tqdm) through it
    return MODEL_THREAD.submit(contextvars.copy_context().run, fn, *args, **kwargs).result()


def handled(fn: Callable) -> Callable:
    """Wrap a handler so that an unexpected failure becomes a short message, never a traceback."""
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except gr.Error:
            raise
        except Exception as e:  # noqa: BLE001 - any failure in a handler (a model's forward, a full disk)
            log.exception("handler %s failed", fn.__name__)
            raise gr.Error(f"Something went wrong ({type(e).__name__}): {clean(e)}. The server is fine; "
                           "try another image or configuration.") from None
    return wrapper


def guard(fn: Callable) -> Callable:
    """`handled`, and run on MODEL_THREAD: for handlers that run a model."""
    return handled(functools.wraps(fn)(lambda *args, **kwargs: on_model_thread(fn, *args, **kwargs)))


# ---- the model cache -----------------------------------------------------------------------------------
def model_bytes(item: object) -> int:
    """Bytes a cached model holds: its parameters and buffers (0 for anything that is not a Loaded)."""
    model = getattr(item, "model", None)
    if not isinstance(model, torch.nn.Module):
        return 0
    return sum(t.numel() * t.element_size() for t in (*model.parameters(), *model.buffers()))


class ModelCache:
    """At most `size` models and `budget` bytes of them (`model_bytes`), least recently used dropped first; a
    model is built once per key. A model larger than the whole budget is built for its request, not kept."""

    def __init__(self, size: int = 4, budget: int | None = None, size_of: Callable[[object], int] = model_bytes):
        self.size, self.builds = size, 0
        self.budget, self.size_of, self.nbytes = budget, size_of, 0
        self._items: OrderedDict[tuple, tuple[Loaded, int]] = OrderedDict()
        self._lock, self._build_lock = threading.Lock(), threading.Lock()

    def get(self, key: tuple, build: Callable[[], Loaded]) -> Loaded:
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
                return self._items[key][0]
        with self._build_lock:  # one build at a time: each key once, and seeded init is not interleaved
            with self._lock:
                if key in self._items:
                    return self._items[key][0]
            item = build()  # outside self._lock: a slow build does not block cached requests
            nbytes = self.size_of(item)
            with self._lock:
                self.builds += 1
                if self.budget is not None and nbytes > self.budget:
                    return item  # used by this request only
                self._items[key] = (item, nbytes)
                self.nbytes += nbytes
                while len(self._items) > self.size or (self.budget is not None and self.nbytes > self.budget):
                    _, (_, old) = self._items.popitem(last=False)
                    self.nbytes -= old
        return item

    def clear(self) -> None:
        with self._lock:
            self._items.clear()
            self.nbytes = 0


CACHE = ModelCache(int(os.environ.get("CONVFORMER_MODEL_CACHE", "4")),
                   int(float(os.environ.get("CONVFORMER_MODEL_CACHE_MB", "768")) * 2**20))


def model_config(controls: Controls, weights: Weights) -> ConvFormerConfig:
    """The architecture a request runs (Weights.model_config: the checkpoint's, else the controls')."""
    return weights.model_config(controls)


def param_count(cfg: ConvFormerConfig) -> int:
    """The exact parameter count of `cfg`, from a model built on the meta device (no memory, no init);
    remembered per config, since every control change asks again."""
    key = repr(cfg)
    if key not in _COUNTS:
        with torch.device("meta"):
            count = sum(p.numel() for p in ConvFormer(cfg).parameters())
        if len(_COUNTS) > 256:
            _COUNTS.clear()
        _COUNTS[key] = count
    return _COUNTS[key]


_COUNTS: dict[str, int] = {}


def load(weights: Weights, cfg: ConvFormerConfig) -> Loaded:
    """The model for resolved weights and a config (see model_config) on the app's device, from the cache when
    built before."""
    return weights.build(cfg, DEVICE, CACHE)


# ---- images --------------------------------------------------------------------------------------------
def picture(path: str | None) -> Image.Image:
    """The decoded image at `path` (an upload), decoded once per file version however often it is shown
    or run; gr.Error when it cannot be used."""
    if not path:
        raise gr.Error("Upload an image first (or pick an example).")
    try:
        stat = Path(path).stat()
        return _decoded(str(path), stat.st_size, stat.st_mtime_ns)
    except (ImageError, OSError) as e:
        raise gr.Error(f"This image cannot be used: {clean(e)}") from None


@functools.lru_cache(maxsize=8)
def _decoded(path: str, size: int, mtime_ns: int) -> Image.Image:
    return load_image(path, max_side=DECODE_SIDE)  # at most 8 x 16 MB kept, whatever was uploaded


# ---- one inspection pass -------------------------------------------------------------------------------
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
    conv_layers: list[str] = field(default_factory=list)  # every conv activation Grad-CAM can explain
    # models whose blocks attend over different grids (the ImageNet references, convformer_app/references.py):
    grids: dict[str, tuple[int, int, int]] = field(default_factory=dict)  # block -> (h, w, prefix)
    rollout: list[str] = field(default_factory=list)  # the blocks rollout multiplies (one grid); empty: all
    notes: list[str] = field(default_factory=list)    # what the attention maps are, said beside them
    relevance: dict[str, np.ndarray] = field(default_factory=dict)  # token grid -> Chefer relevance (h, w) in [0, 1]
    relevance_class: str | None = None


LATENCY_RUNS = 9          # timed forwards per request (after one untimed warm-up; at least 3), unless ...
LATENCY_BUDGET_S = 0.25   # ... they take longer than this together


@gpu
def _compute(model: ConvFormer, x: torch.Tensor, cam: int | str | None, layers: list[str] | None = None,
             relevance: int | str | None = None):
    """Inspect (one forward, plus the backward Grad-CAM needs), then time the plain forward pass of this
    request: one untimed warm-up (the inspection ran another path: hooks, manual attention), then 3 to
    LATENCY_RUNS timed runs within LATENCY_BUDGET_S: their median and quartiles (`convformer.timing`). Only the
    model and tensors go in, so ZeroGPU can run this in its worker. `relevance`: the class Chefer et al.'s
    relevance explains (None: none)."""
    result = inspect(model, x, cam_class=cam, cam_layers=layers, relevance_class=relevance)
    return result, forward_latency(model, x, LATENCY_RUNS, LATENCY_BUDGET_S)


def explained_class(classes: list[str], cam_target: str) -> int | str:
    """The class Grad-CAM and relevance explain: the chosen one's index, else "pred" (the predicted class)."""
    return classes.index(cam_target) if cam_target in classes else "pred"


def relevance_fields(result, classes: list[str]) -> dict:
    """A Run's relevance and the class it explains, from one inspection."""
    return {"relevance": {k: viz.to_numpy(v[0]) for k, v in result.relevance.items()},
            "relevance_class": classes[int(result.relevance_class[0])] if result.relevance_class is not None else None}


def run(image: str | None, controls: Controls, weights: Weights, cam_target: str = PREDICTED,
        cam_layer: str | None = None, resize: str = "keep") -> Run:
    """Decode the image, get the model, inspect once, keep what the pictures need: the one Run path of every
    weights choice (the weights load their model and prepare the picture). Grad-CAM explains `cam_layer` (one
    of the model's conv_layers; else the last conv layer of each branch). resize: "keep" the image's aspect
    (the short side to the model's input size) or "squash" it to the input size (data.fit)."""
    return measured(image, controls, weights, cam_target, cam_layer, resize)[0]


def measured(image: str | None, controls: Controls, weights: Weights, cam_target: str = PREDICTED,
             cam_layer: str | None = None, resize: str = "keep") -> tuple[Run, Latency]:
    """`run`, and the latency of a plain forward pass on this device."""
    if resize not in RESIZES:
        raise gr.Error(f"resize={resize!r} is not allowed: expected one of {', '.join(RESIZES)}")
    shown = picture(image)
    loaded = weights.load(controls, DEVICE, CACHE)
    model = loaded.model
    cam, relevance = weights.explains(model, explained_class(loaded.classes, cam_target))
    layers = conv_layers(model)
    try:
        prepared = weights.prepare(shown, model, resize)
        x = prepared.x.to(DEVICE)
        with loaded.lock:  # inspect() hooks the model: one request at a time per model
            result, latency = _compute(model, x, cam, [cam_layer] if cam_layer in layers else None, relevance)
    except torch.OutOfMemoryError:
        raise gr.Error("The model ran out of memory on this device: choose a smaller configuration.") from None
    grids = {b: (g.h, g.w, g.prefix) for b in result.attentions if (g := result.grid_of(b)) is not None}
    rollout = result.rollout_blocks()
    size = tuple(x.shape[-2:])  # (H, W) the model ran: the maps and the shape table follow this grid
    return Run(display=views.display_image(prepared.display, size), fusion=weights.fusion(model),
               classes=loaded.classes, probs=result.probs[0].float().cpu().numpy(),
               attentions={k: viz.to_numpy(v[0]).astype(np.float16) for k, v in result.attentions.items()},
               grid=grids.get(rollout[-1]) if rollout else None, channels=viz.top_activations(result.activations),
               cam={k: viz.to_numpy(v[0]) for k, v in result.cam.items()},
               cam_class=loaded.classes[int(result.cam_class[0])] if result.cam_class is not None else None,
               conv_layers=layers if cam is not None else [], shapes=result.shapes,
               **relevance_fields(result, loaded.classes), grids=grids, rollout=rollout,
               notes=[*weights.notes, *result.notes],
               stats=views.stats_markdown(result.params, result.flops, latency, device_name(), size)
               + prepared.note), latency
