"""Detect and segment one image: preprocessing as the classifier's (aspect kept), the head, its decoding, and
everything mapped back to the uploaded image's own pixels."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from ..data import fit, preprocess, to_rgb
from .decode import decode, fold
from .model import TaskModel

FULL_RES_LIMIT = 50_000_000  # (K + 1) * H * W values upsampled at once; above, the mask is resized instead


@dataclass
class Detections:
    """Boxes in the original image's pixels. `boxes` (N, 4) xyxy float, `scores` (N,), `labels` (N,) int64,
    `names`; one box per object: a dense head's per-class peaks put two boxes on an object that scores in two
    classes, a set head's neighbouring queries may settle on the same object; the strongest is kept
    (torchvision's class-agnostic `nms`, IoU 0.5) and the strongest box of another class it covered is its
    `second` (N, 2): (class, score), (-1, 0) for none; every candidate stays in `raw`. For the views: `heatmap` (K, h, w) class-centre probabilities (dense head) or `attention`
    (N, L, h, w) the cross-attention of each box's query per decoder layer and `queries` (N,) (set head);
    `input_hw` what the model saw, `image_size` (W, H) of the original, `message` one line for the user."""

    boxes: torch.Tensor
    scores: torch.Tensor
    labels: torch.Tensor
    names: list[str]
    image_size: tuple[int, int]
    input_hw: tuple[int, int]
    raw: torch.Tensor                      # (N_all, 6) every decoded candidate, input pixels (before threshold)
    heatmap: torch.Tensor | None = None
    attention: torch.Tensor | None = None
    queries: torch.Tensor | None = None
    second: torch.Tensor | None = None     # (N, 2) the second guess folded into each box: class, score
    message: str = ""

    def rows(self) -> list[tuple[str, float, float, float, float, float]]:
        """(class, score, x1, y1, x2, y2) per box, best first."""
        return [(n, s, *b) for n, s, b in zip(self.names, self.scores.tolist(), self.boxes.tolist())]


@dataclass
class Segmentation:
    """`mask` (H, W) int64 class index per pixel of the original image (0 background, 1 + k class k);
    `probs` (K+1, h, w) at the model's input size; `class_names` with "background" first."""

    mask: torch.Tensor
    probs: torch.Tensor
    class_names: list[str]
    image_size: tuple[int, int]
    input_hw: tuple[int, int]
    areas: dict[str, float] = field(default_factory=dict)  # class -> fraction of the image
    message: str = ""


def _check(model: TaskModel, task: str) -> None:
    if getattr(model, "task", "classify") != task:
        raise ValueError(f"this is a {getattr(model, 'task', 'classify')} model; {task} needs a {task} model")


@torch.inference_mode()
def detect(model: TaskModel, image: Image.Image, score_threshold: float = 0.3, resize: str = "keep") -> Detections:
    """Boxes, scores and classes for one image of any size and aspect (preprocessed as the classifier's:
    aspect kept), in the image's own pixels."""
    _check(model, "detect")
    if not isinstance(score_threshold, (int, float)) or isinstance(score_threshold, bool) \
            or not 0.0 <= score_threshold <= 1.0:
        raise ValueError(f"score_threshold={score_threshold!r} is out of range: expected a number in [0, 1]")
    rgb = to_rgb(image)
    x = preprocess(rgb, model, resize)
    hw = tuple(x.shape[-2:])
    out = model(x)
    raw = decode(out, hw, model.head_config.max_detections)[0].float().cpu()          # (N, 6) input px
    scale = torch.tensor([rgb.width / hw[1], rgb.height / hw[0]] * 2)
    order = raw[:, 4].argsort(descending=True)
    raw = raw[order]
    kept = torch.nonzero(raw[:, 4] >= score_threshold).flatten()
    heat = attn = queries = None
    fused, absorbed = fold(raw[kept])  # one box per object, another class's box on it named as its second guess
    second = torch.stack([raw[kept[absorbed], 5], raw[kept[absorbed], 4]], 1)
    second[absorbed < 0] = torch.tensor([-1.0, 0.0])
    kept = kept[fused]
    if "heatmap" in out:
        heat = out["heatmap"][0].sigmoid().float().cpu()
    else:
        queries = order[kept]
        attn = out["cross_attn"][0].transpose(0, 1)[queries].float().cpu()             # (N, L, h, w)
    dets = raw[kept]
    boxes = (dets[:, :4] * scale).clamp(min=0)
    boxes = torch.minimum(boxes, torch.tensor([rgb.width, rgb.height] * 2, dtype=boxes.dtype))
    labels = dets[:, 5].long()
    names = [model.class_names[i] for i in labels.tolist()]
    msg = (f"{len(dets)} object{'s' if len(dets) != 1 else ''} found" if len(dets) else
           f"no objects found (no box scored {score_threshold:g} or more)")
    return Detections(boxes, dets[:, 4].clone(), labels, names, rgb.size, hw, raw, heat, attn, queries, second, msg)


@torch.inference_mode()
def segment(model: TaskModel, image: Image.Image, resize: str = "keep") -> Segmentation:
    """A class per pixel of the original image (aspect kept on the way in, logits upsampled back)."""
    _check(model, "segment")
    rgb = to_rgb(image)
    x = preprocess(rgb, model, resize)
    logits = model(x)["logits"][:1].float().cpu()                                     # (1, K+1, h, w)
    w, h = rgb.size
    if logits.shape[1] * h * w <= FULL_RES_LIMIT:
        mask = F.interpolate(logits, size=(h, w), mode="bilinear", align_corners=False)[0].argmax(0)
    else:
        small = Image.fromarray(logits[0].argmax(0).to(torch.uint8).numpy())
        mask = torch.from_numpy(np.array(small.resize((w, h), Image.Resampling.NEAREST))).long()
    names = ["background", *model.class_names]
    counts = torch.bincount(mask.flatten(), minlength=len(names)).tolist()
    areas = {n: c / mask.numel() for n, c in zip(names, counts) if c}
    found = [n for n in areas if n != "background"]
    msg = ("classes found: " + ", ".join(found)) if found else "no objects found (every pixel is background)"
    return Segmentation(mask, logits[0].softmax(0), names, rgb.size, tuple(x.shape[-2:]), areas, msg)


def input_message(model: TaskModel, image: Image.Image, resize: str = "keep") -> str:
    """What preprocessing does to this image, in one line (as `predict` prints it)."""
    return fit(image.size, model, resize).message()
