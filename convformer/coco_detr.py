"""A published conv + transformer detector for photos: DETR with a ResNet-50 (`facebook/detr-resnet-50`,
Carion et al. 2020, "End-to-End Object Detection with Transformers"), loaded through its well-kept library
(transformers, imported only when this module loads a model) and inspected like our own models.

DETR is the textbook answer to "fuse a CNN and a transformer, and what comes out": the ResNet's last map
(B, 2048, h, w) -> a 1 x 1 conv to D = 256 -> flattened into N = h x w tokens with a sine positional encoding
-> a transformer encoder -> a decoder of Q = 100 learned object queries that cross-attend to the tokens ->
class logits (B, Q, K+1) (the last class is "no object") and boxes (B, Q, 4) (cx, cy, w, h in [0, 1]) ->
post-processing (softmax, drop "no object", keep scores above a threshold, boxes to x1 y1 x2 y2 in the
photo's pixels), as in the paper's `PostProcess`. Why DETR and not RT-DETR or Conditional DETR:
docs/photos.md (measured by benchmarks/bench_coco.py).

Weights come through transformers' `from_pretrained` and the standard Hugging Face cache, as safetensors only
(never a pickle): once downloaded it works offline (HF_HUB_OFFLINE=1). Before a download the Hub is asked once,
with a short timeout, for the weights' size, so an unreachable Hub with nothing cached is one
`WeightsUnavailable` line within seconds. The ResNet inside is built by timm *without* its ImageNet weights
(transformers 5 ignores the config's legacy `use_pretrained_backbone`): every weight comes from this repository.

Seeing inside (`inspect`): the decoder's cross-attention per layer and per query (where each detected object's
query looked: the paper's figure 6), the encoder's self-attention (any token's row: where a clicked pixel
looks), the backbone's conv activations, the shape table from (B, 3, H, W) to the boxes with named axes, read
from the live model by hooks that are always removed; `grad_cam` explains one box (its query's class logit)
on the backbone's last map. Attention is read on transformers' eager path, switched on only while inspecting.
"""
from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from huggingface_hub import constants, get_hf_file_metadata, hf_hub_url, try_to_load_from_cache
from PIL import Image
from torch import nn
from torchvision.ops import box_convert

from .messages import reason
from .references import HUB_TIMEOUT, WeightsUnavailable

REPO = "facebook/detr-resnet-50"
FILES = ("config.json", "preprocessor_config.json", "model.safetensors")  # what from_pretrained reads
THRESHOLD = 0.7  # a box is kept when its best class (not "no object") scores above this


@dataclass
class Detector:
    """A loaded detector: the transformers model (eval) and its image processor (resize, normalise)."""
    model: nn.Module
    processor: Any
    repo: str = REPO

    @property
    def labels(self) -> list[str]:
        """Class index -> name, from the model's own config (COCO's 91 ids, unused ones 'N/A')."""
        id2label = self.model.config.id2label
        return [str(id2label.get(i, i)) for i in range(len(id2label))]


@dataclass(frozen=True)
class Detection:
    label: str
    score: float
    box: tuple[float, float, float, float]  # x1, y1, x2, y2 in the photo's pixels
    query: int                              # which object query found it
    class_id: int

    def line(self) -> str:
        x1, y1, x2, y2 = self.box
        return f"{self.label}\t{self.score:.3f}\t{x1:.1f} {y1:.1f} {x2:.1f} {y2:.1f}"


@dataclass
class Row:
    """One row of the shape table: shapes with named axes, as text, and the step's parameters."""
    name: str
    input: str
    output: str
    params: int
    note: str


@dataclass
class Found:
    boxes: torch.Tensor      # (N, 4) x1 y1 x2 y2, the photo's pixels
    scores: torch.Tensor     # (N,)
    labels: torch.Tensor     # (N,) class ids (Detector.labels names them)
    queries: torch.Tensor    # (N,) the query that found each
    attention: torch.Tensor  # (N, layers, h, w) that query's cross-attention, heads averaged


@dataclass
class DetrInspection:
    detections: list[Detection]
    size: tuple[int, int]                   # the photo's (width, height)
    input_hw: tuple[int, int]               # the model's input (H, W) after resizing
    grid: tuple[int, int]                   # the token grid (h, w) of the backbone's last map
    cross: torch.Tensor                     # (layers, heads, Q, h*w): decoder cross-attention, rows sum to 1
    encoder: torch.Tensor                   # (layers, N, N), heads averaged: encoder self-attention
    activations: dict[str, torch.Tensor]    # backbone stage -> (C, h, w)
    rows: list[Row]
    logits: torch.Tensor                    # (Q, K+1)
    boxes: torch.Tensor                     # (Q, 4) cx, cy, w, h in [0, 1]
    notes: list[str] = field(default_factory=list)

    def as_detections(self) -> "Found":
        """The detections as tensors, the form issue 23's Detect views take (convformer_app/tasks/results.py's
        Detections-like value): boxes (N, 4) xyxy in the photo's pixels, scores (N,), labels (N,), queries (N,),
        and attention (N, layers, h, w): where each detection's query looked, heads averaged."""
        q = torch.tensor([d.query for d in self.detections], dtype=torch.int64)
        attention = self.cross.mean(1)[:, q].permute(1, 0, 2).reshape(len(q), -1, *self.grid)  # (N, L, h, w)
        return Found(torch.tensor([d.box for d in self.detections]).reshape(-1, 4),
                     torch.tensor([d.score for d in self.detections]),
                     torch.tensor([d.class_id for d in self.detections], dtype=torch.int64), q, attention)

    def query_map(self, query: int, layer: int = -1, head: int | None = None) -> np.ndarray:
        """Where object query `query` looked in decoder layer `layer`: (h, w), heads averaged unless `head`."""
        a = self.cross[layer, :, query] if head is None else self.cross[layer, head, query][None]
        return a.float().mean(0).reshape(self.grid).numpy()

    def pixel_map(self, x: float, y: float, layer: int = -1) -> np.ndarray:
        """Where the encoder token under photo pixel (x, y) looked in encoder layer `layer`: (h, w)."""
        h, w = self.grid
        col = min(max(int(x / self.size[0] * w), 0), w - 1)
        row = min(max(int(y / self.size[1] * h), 0), h - 1)
        return self.encoder[layer, row * w + col].float().reshape(self.grid).numpy()


# ---- loading ---------------------------------------------------------------------------------------------
def cached(repo: str = REPO) -> bool:
    """Whether every file the model needs is in the Hugging Face cache (then loading touches no network)."""
    return all(isinstance(try_to_load_from_cache(repo, name), str) for name in FILES)


def download_size(repo: str = REPO, timeout: float = HUB_TIMEOUT) -> int | None:
    """Ask the Hub once (`timeout` seconds, no retries) for the weights' size; WeightsUnavailable when it cannot
    be reached or HF_HUB_OFFLINE is set."""
    if constants.HF_HUB_OFFLINE:
        raise WeightsUnavailable(f"{repo} is not in the Hugging Face cache ({constants.HF_HUB_CACHE}) and "
                                 "HF_HUB_OFFLINE is set: run once with the Hub reachable to download it")
    try:
        return get_hf_file_metadata(hf_hub_url(repo, FILES[-1]), timeout=timeout).size
    except Exception as e:  # refused, DNS, timeout, proxy, HTTP error: all mean "cannot download"
        raise WeightsUnavailable(f"cannot download {repo}: the Hugging Face Hub is unreachable ({reason(e)}) "
                                 f"and it is not in the cache ({constants.HF_HUB_CACHE})") from None


def load(repo: str = REPO, on_download: Callable[[str, int | None], None] | None = None) -> Detector:
    """The detector in eval mode, from the Hugging Face cache when it is there (no network at all), else
    downloaded by transformers after one quick reachability check (`on_download(repo, bytes)` first)."""
    local = cached(repo)
    if not local:
        size = download_size(repo)
        if on_download is not None:
            on_download(repo, size)
    from transformers import AutoImageProcessor, AutoModelForObjectDetection  # the only import of transformers

    try:
        processor = AutoImageProcessor.from_pretrained(repo, local_files_only=local)
        model = AutoModelForObjectDetection.from_pretrained(repo, local_files_only=local, use_safetensors=True)
    except (OSError, ValueError, RuntimeError) as e:
        raise WeightsUnavailable(f"cannot load {repo}: {reason(e)}") from None
    return Detector(model.eval(), processor, repo)


# ---- predicting ------------------------------------------------------------------------------------------
def preprocess(det: Detector, image: Image.Image) -> torch.Tensor:
    """A photo -> (1, 3, H, W) as the model was trained (short side 800, long side at most 1333, ImageNet
    mean / std): the processor's own settings, read from the repository."""
    x = det.processor(images=image.convert("RGB"), return_tensors="pt")["pixel_values"]
    return x.to(next(det.model.parameters()).device)


def post_process(logits: torch.Tensor, boxes: torch.Tensor, size: tuple[int, int], labels: list[str],
                 threshold: float = THRESHOLD) -> list[Detection]:
    """DETR's PostProcess for one image: (Q, K+1) logits and (Q, 4) cx, cy, w, h in [0, 1] -> the queries whose
    best real class scores above `threshold`, boxes in pixels of a photo of `size` (width, height), best first."""
    probs = logits.float().softmax(-1)[:, :-1]           # (Q, K): "no object" dropped
    scores, classes = probs.max(-1)
    keep = (scores > threshold).nonzero().flatten().tolist()
    w, h = size
    xyxy = box_convert(boxes.float(), "cxcywh", "xyxy") * torch.tensor([w, h, w, h])
    found = [Detection(labels[int(classes[q])], float(scores[q]), tuple(float(v) for v in xyxy[q]), q,
                       int(classes[q])) for q in keep]
    return sorted(found, key=lambda d: -d.score)


def detect(det: Detector, image: Image.Image, threshold: float = THRESHOLD) -> list[Detection]:
    """The objects in a photo: class name, score, box in the photo's pixels, best first."""
    with torch.inference_mode():
        out = det.model(pixel_values=preprocess(det, image))
    return post_process(out.logits[0], out.pred_boxes[0], image.size, det.labels, threshold)


# ---- seeing inside ---------------------------------------------------------------------------------------
def _params(*modules: nn.Module) -> int:
    return sum(p.numel() for m in modules for p in m.parameters())


def _first(args: tuple, kwargs: dict, name: str) -> torch.Tensor:
    return kwargs[name] if name in kwargs else args[0]


class _Recorder:
    """Forward hooks on the detector's named parts, recording shapes and the backbone's maps; every hook is
    removed on exit (pytorch-grad-cam's pattern). `leaf=True` makes the backbone's last map a leaf that
    requires grad, so Grad-CAM can read its gradient whatever the backbone's frozen parameters."""

    def __init__(self, model: nn.Module, leaf: bool = False):
        self.model, self.leaf = model, leaf
        self.shapes: dict[str, tuple[tuple, tuple]] = {}
        self.maps: dict[str, torch.Tensor] = {}
        self.handles: list = []

    def parts(self) -> dict[str, nn.Module]:
        inner = self.model.model
        body = inner.backbone.model  # timm's ResNet, features only
        parts = {f"backbone.{n}": m for n, m in body.named_children()}
        return {**parts, "input_projection": inner.input_projection, "encoder": inner.encoder, "decoder": inner.decoder, "class_head": self.model.class_labels_classifier,
                "box_head": self.model.bbox_predictor}

    def __enter__(self) -> "_Recorder":
        for name, module in self.parts().items():
            self.handles.append(module.register_forward_hook(self._hook(name), with_kwargs=True))
        self.handles.append(self.model.model.backbone.model.register_forward_hook(self._last_map))
        return self

    def _hook(self, name: str):
        def hook(module, args, kwargs, out):
            x = _first(args, kwargs, "inputs_embeds")
            y = out.last_hidden_state if hasattr(out, "last_hidden_state") else out
            self.shapes[name] = (tuple(x.shape), tuple(y.shape))
            if name.startswith("backbone.layer"):
                self.maps[name.split(".", 1)[1]] = y.detach()[0]
        return hook

    def _last_map(self, module, args, out):
        if not self.leaf:
            return None
        out = list(out)
        out[-1] = self.maps["cam"] = out[-1].detach().requires_grad_(True)
        return out

    def __exit__(self, *exc) -> None:
        for h in self.handles:
            h.remove()
        self.handles.clear()


@contextlib.contextmanager
def _eager(model: nn.Module) -> Iterator[None]:
    """Attention on transformers' eager path (its probabilities can be returned), restored afterwards."""
    before = model.config._attn_implementation
    if before != "eager":
        model.set_attn_implementation({"": "eager"})  # the model's own modules (timm's backbone has none)
    try:
        yield
    finally:
        if before != "eager":
            model.set_attn_implementation({"": before})


def inspect(det: Detector, image: Image.Image, threshold: float = THRESHOLD) -> DetrInspection:
    """One forward pass that returns the detections and what produced them (see DetrInspection)."""
    model, x = det.model, preprocess(det, image)
    with _eager(model), _Recorder(model) as rec, torch.inference_mode():
        out = model(pixel_values=x, output_attentions=True)
    logits, boxes = out.logits[0].float().cpu(), out.pred_boxes[0].float().cpu()
    found = post_process(logits, boxes, image.size, det.labels, threshold)
    grid = tuple(rec.shapes["input_projection"][1][-2:])
    cross = torch.stack([a[0] for a in out.cross_attentions]).float().cpu()              # (L, heads, Q, N)
    encoder = torch.stack([a[0].mean(0) for a in out.encoder_attentions]).float().cpu()  # (L, N, N)
    maps = {k: v.float().cpu() for k, v in rec.maps.items()}
    return DetrInspection(found, image.size, tuple(x.shape[-2:]), grid, cross, encoder, maps,
                          shape_rows(det, rec.shapes, len(found)), logits, boxes)


def grad_cam(det: Detector, image: Image.Image, query: int, class_id: int) -> np.ndarray:
    """Grad-CAM (Selvaraju et al. 2017) for one box: the gradient of query `query`'s `class_id` logit on the
    backbone's last map (C, h, w), averaged per channel, weighting the map; ReLU; (h, w) scaled to [0, 1]."""
    model, x = det.model, preprocess(det, image)
    with _Recorder(model, leaf=True) as rec, torch.enable_grad():
        out = model(pixel_values=x)
        act = rec.maps["cam"]                                              # (1, C, h, w), a leaf
        grad, = torch.autograd.grad(out.logits[0, query, class_id], act)  # no parameter's .grad is touched
    weights = grad[0].mean(dim=(1, 2))                                     # (C,)
    cam = torch.relu((weights[:, None, None] * act[0].detach()).sum(0))   # (h, w)
    cam = cam.float().cpu()
    return (cam / cam.max()).numpy() if cam.max() > 0 else cam.numpy()


# ---- the shape table, with named axes --------------------------------------------------------------------
def _grid(shape: tuple, c: str = "C") -> str:
    b, ch, h, w = shape
    return f"(B={b}, {c}={ch}, H={h}, W={w})"


def shape_rows(det: Detector, shapes: dict[str, tuple[tuple, tuple]], kept: int) -> list[Row]:
    """The table from (B, 3, H, W) through the backbone, tokens + positional encoding, encoder, queries,
    decoder, the two heads and post-processing, from the shapes one forward pass recorded."""
    model, cfg = det.model, det.model.config
    parts = _Recorder(model).parts()
    stages = [n for n in shapes if n.startswith("backbone.")]
    stem = [n for n in stages if not n.startswith("backbone.layer")]
    first = shapes[stages[0]][0]
    size = dict(getattr(det.processor, "size", None) or {})
    resize = (f"resized: short side {size['shortest_edge']}, long side <= {size['longest_edge']}; normalised"
              if {"shortest_edge", "longest_edge"} <= set(size) else "resized and normalised by the processor")
    rows = [Row("input", "photo", _grid(first), 0, resize)]
    if stem:
        rows.append(Row("backbone.stem", _grid(first), _grid(shapes[stem[-1]][1]),
                        _params(*(parts[n] for n in stem)), "7x7 conv stride 2, BN, ReLU, 3x3 max-pool stride 2"))
    for n in stages:
        if n.startswith("backbone.layer"):
            rows.append(Row(n, _grid(shapes[n][0]), _grid(shapes[n][1]), _params(parts[n]),
                            "ResNet stage" + (", stride 2" if shapes[n][1][-1] < shapes[n][0][-1] else "")))
    c_in, d_out = shapes["input_projection"]
    b, d, h, w = d_out
    n, q, k1 = h * w, cfg.num_queries, cfg.num_labels + 1
    tokens = f"(B={b}, N={h}x{w}={n}, D={d})"
    queries = f"(B={b}, Q={q}, D={d})"
    rows += [
        Row("input_projection", _grid(c_in), _grid(d_out, "D"), _params(parts["input_projection"]), "1x1 conv to D"),
        Row("tokens + position", _grid(d_out, "D"), f"{tokens} + sine pos {tokens}", 0,
            "flatten h x w into N tokens; a 2-D sine encoding added to queries and keys in every layer"),
        Row(f"encoder x{cfg.encoder_layers}", tokens, tokens, _params(parts["encoder"]),
            "self-attention over all N tokens + MLP"),
        Row("object queries", f"(Q={q}, D={d}) learned", queries, _params(model.model.query_position_embeddings),
            "Q learned query positions; the decoder starts from zeros"),
        Row(f"decoder x{cfg.decoder_layers}", f"{queries} + memory {tokens}", queries, _params(parts["decoder"]),
            "self-attention among queries, cross-attention to the N tokens, MLP"),
        Row("class_head", queries, f"(B={b}, Q={q}, K+1={k1})", _params(parts["class_head"]),
            f"Linear: K={cfg.num_labels} COCO ids + 'no object'"),
        Row("box_head", queries, f"(B={b}, Q={q}, 4)", _params(parts["box_head"]), "3-layer MLP, sigmoid: cx, cy, w, h in [0, 1]"),
        Row("post-process", f"(B={b}, Q={q}, K+1={k1}) + (B={b}, Q={q}, 4)", f"(M={kept}, 4) x1 y1 x2 y2 px + M scores",
            0, f"softmax, drop 'no object', keep score > threshold, boxes to the photo's pixels"),
    ]
    return rows


def format_rows(rows: list[Row]) -> str:
    """The shape table as aligned text (the CLI's `--table`), with the parameter total."""
    from .inspection import human

    lines = [("step", "input", "output", "params", "what")]
    lines += [(r.name, r.input, r.output, human(r.params) if r.params else "", r.note) for r in rows]
    lines.append(("total", "", "", human(sum(r.params for r in rows)), ""))
    widths = [max(len(line[i]) for line in lines) for i in range(5)]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(line, widths)).rstrip() for line in lines)


__all__ = ["FILES", "REPO", "THRESHOLD", "Detection", "Detector", "DetrInspection", "Found", "Row", "cached", "detect",
           "download_size", "format_rows", "grad_cam", "inspect", "load", "post_process", "preprocess",
           "shape_rows"]
