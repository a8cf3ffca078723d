"""What the Detect and Segment views show, as plain values kept in gr.State, and the pictures and tables
made from them (no model, no Gradio).

The seam: `DetectResult.of(detections, image, ...)` takes ANY Detections-like value (attributes `boxes`
(N, 4) xyxy in the original image's pixels, `scores` (N,), `labels` (N,), and optionally `heatmap` /
`heatmaps` (K, h, w) from a dense head or `attention` (N, h, w) or (N, L, h, w), each detection's query
cross-attention (per decoder layer) from a set head, its `queries` (N,), and `second` (N, 2): the class and
score of a second guess folded into each box, class -1 for none), whatever made it: our task
models (convformer.tasks.detect) or another detector.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
from PIL import Image

from convformer.inspection import viz

from . import draw

DISPLAY = 640  # long side of the task pictures, in pixels (boxes and captions stay readable)


def _array(value, dtype=np.float32) -> np.ndarray:
    return viz.to_numpy(value).astype(dtype) if value is not None else None


@dataclass
class DetectResult:
    """One detection request, reduced to what its pictures need."""
    display: Image.Image              # the image, DISPLAY px on its long side
    scale: float                      # display px per original px
    size: tuple[int, int]             # the original image's (W, H)
    boxes: np.ndarray                 # (N, 4) xyxy, original pixels
    scores: np.ndarray                # (N,)
    labels: np.ndarray                # (N,) int
    class_names: list[str]            # every class the detector knows
    threshold: float
    heatmaps: np.ndarray | None = None    # (K, h, w): dense head, one per class
    attention: np.ndarray | None = None   # (N, h, w): set head, where each detection's query looked (last layer)
    queries: np.ndarray | None = None     # (N,): set head, each detection's query
    second: np.ndarray | None = None      # (N, 2): the class and score of each box's second guess (-1: none)
    notes: list[str] = field(default_factory=list)

    @classmethod
    def of(cls, detections, image: Image.Image, class_names: Sequence[str], threshold: float) -> DetectResult:
        """From a Detections-like value (see the module docstring) and the image it was made from."""
        display, scale = draw.resized(image, DISPLAY)
        heat = getattr(detections, "heatmaps", None)
        if heat is None:
            heat = getattr(detections, "heatmap", None)
        attention = getattr(detections, "attention", None)
        heat, attention = _array(heat), _array(attention)
        if attention is not None and attention.ndim == 4:  # (N, L, h, w): per decoder layer; the last decides
            attention = attention[:, -1]
        return cls(display=display, scale=scale, size=image.size,
                   boxes=_array(detections.boxes).reshape(-1, 4), scores=_array(detections.scores).reshape(-1),
                   labels=_array(detections.labels, np.int64).reshape(-1), class_names=list(class_names),
                   threshold=float(threshold), heatmaps=None if heat is None else heat.reshape(-1, *heat.shape[-2:]),
                   attention=None if attention is None else attention.reshape(-1, *attention.shape[-2:]),
                   queries=_array(getattr(detections, "queries", None), np.int64),
                   second=_array(getattr(detections, "second", None)))

    def name(self, i: int) -> str:
        """Detection i's class name."""
        return self.class_name(int(self.labels[i]))

    def second_guess(self, i: int, say=str) -> str:
        """Detection i's folded second guess as "class 0.47" (the name through `say`), or "" without one."""
        if self.second is None or i >= len(self.second) or self.second[i, 0] < 0:
            return ""
        return f"{say(self.class_name(int(self.second[i, 0])))} {self.second[i, 1]:.2f}"

    def class_name(self, label: int) -> str:
        return self.class_names[label] if 0 <= label < len(self.class_names) else f"class {label}"

    @property
    def colours(self) -> list[draw.Colour]:
        return draw.palette(len(self.class_names))


def boxes_picture(r: DetectResult, selected: int | None = None) -> Image.Image:
    """The image with every box, its class name and score, and a legend of the classes found."""
    captions = [" / ".join(filter(None, [f"{r.name(i)} {r.scores[i]:.2f}", r.second_guess(i)]))
                for i in range(len(r.boxes))]
    shown = draw.draw_boxes(r.display, draw.scale_boxes(r.boxes, r.scale), r.labels, captions, r.colours, selected)
    found = sorted(set(int(v) for v in r.labels))
    return draw.with_legend(shown, [(r.class_name(c), r.colours[c % len(r.colours)]) for c in found])


DETECTION_HEADERS = ["#", "class", "score", "x1", "y1", "x2", "y2", "second guess"]  # the API's (English) names


def detection_rows(r: DetectResult, say=str) -> list[list]:
    """One row per detection, strongest first: index, class, score, the box in the original image's pixels
    (whole pixels: a 64 px model's boxes are not finer than that), and the second guess folded into it ("" for
    none); class names through `say` (the page's language)."""
    return [[i, say(r.name(i)), round(float(r.scores[i]), 3), *(round(float(v)) for v in r.boxes[i]),
             r.second_guess(i, say)] for i in range(len(r.boxes))]


def heatmap_picture(r: DetectResult, class_index: int | None) -> Image.Image | None:
    """A dense head's heatmap for one class over the image (None without heatmaps)."""
    if r.heatmaps is None or not len(r.heatmaps):
        return None
    k = class_index if class_index is not None and 0 <= class_index < len(r.heatmaps) else \
        int(r.labels[0]) if len(r.labels) else int(r.heatmaps.reshape(len(r.heatmaps), -1).max(1).argmax())
    return viz.overlay(r.display, np.clip(r.heatmaps[k], 0, None), alpha=0.55, cmap="inferno")


def query_picture(r: DetectResult, index: int | None) -> Image.Image | None:
    """Where detection `index`'s query looked (a set head's cross-attention) with its box drawn; None when
    the detector has no per-query attention or there is no such detection."""
    if r.attention is None or index is None or not 0 <= index < len(r.attention):
        return None
    shown = viz.overlay(r.display, r.attention[index], alpha=0.55, cmap="jet")
    box = draw.scale_boxes(r.boxes[index:index + 1], r.scale)
    return draw.draw_boxes(shown, box, r.labels[index:index + 1], [f"{r.name(index)} {r.scores[index]:.2f}"],
                           r.colours)


def clicked_box(r: DetectResult, point: Sequence[float]) -> int | None:
    """The detection under a click (x, y) on the boxes picture (display pixels)."""
    x, y = point[:2]
    return draw.box_at(r.boxes, x / r.scale, y / r.scale)


# ---- segmentation --------------------------------------------------------------------------------------
@dataclass
class SegmentResult:
    """One segmentation request: the predicted class per pixel of the original image."""
    display: Image.Image
    mask: np.ndarray                  # (H, W) uint8 class indices, original pixels; 0 = background
    class_names: list[str]            # index 0 is the background
    truth: np.ndarray | None = None   # (H, W) the true semantic mask, when the image is a known Shapes scene

    @classmethod
    def of(cls, segmentation, image: Image.Image, class_names: Sequence[str],
           truth: np.ndarray | None = None) -> SegmentResult:
        display, _ = draw.resized(image, DISPLAY)
        return cls(display=display, mask=viz.to_numpy(segmentation.mask).astype(np.uint8),
                   class_names=list(class_names), truth=None if truth is None else np.asarray(truth, np.uint8))

    @property
    def colours(self) -> list[draw.Colour]:
        return draw.palette(len(self.class_names) - 1)  # the background has none


def mask_picture(r: SegmentResult) -> Image.Image:
    """The predicted mask over the image, with a legend of the classes it contains (not the background)."""
    found = [int(c) for c in np.unique(r.mask) if 0 < c < len(r.class_names)]
    return draw.with_legend(draw.mask_overlay(r.display, r.mask, r.colours),
                            [(r.class_names[c], r.colours[c - 1]) for c in found])


IOU_HEADERS = ["class", "IoU", "predicted px", "true px"]


def iou_rows(r: SegmentResult) -> list[list]:
    """Per class present in the prediction or the truth (background included): IoU, predicted and true pixel
    counts; empty when the truth is not known."""
    if r.truth is None:
        return []
    k = len(r.class_names)
    pred, true = r.mask.reshape(-1).astype(np.int64), r.truth.reshape(-1).astype(np.int64)
    confusion = np.bincount(true * k + pred, minlength=k * k).reshape(k, k)
    inter, n_pred, n_true = np.diag(confusion), confusion.sum(0), confusion.sum(1)
    union = n_pred + n_true - inter
    return [[r.class_names[c], round(float(inter[c] / union[c]), 3), int(n_pred[c]), int(n_true[c])]
            for c in range(k) if union[c] > 0]


def mean_iou(rows: Sequence[Sequence]) -> float | None:
    """The mean of the IoU column of `iou_rows` (classes present), None when there are none."""
    return float(np.mean([row[1] for row in rows])) if rows else None


# ---- the shape table and diagram past the backbone ----------------------------------------------------
def split_rows(rows: Sequence) -> tuple[list, list]:
    """(the backbone's ShapeRows, the task's rows (convformer.tasks.task_shape_rows: named axes of their own))."""
    task = [r for r in rows if hasattr(r, "output_axes")]
    return [r for r in rows if not hasattr(r, "output_axes")], task


def task_table_rows(task_rows: Sequence, say=str) -> list[list[str]]:
    """The task's rows for the shape table: step, input, output (named axes), params, FLOPs, what (`say`: the
    note in the page's language)."""
    from convformer.inspection import human
    return [[r.name, r.input_axes, r.output_axes, human(r.params), human(r.flops), say(r.note)] for r in task_rows]


def task_diagram(task_rows: Sequence) -> str:
    """The task's steps as boxes after the backbone's diagram (taps -> neck -> head -> decoding), each with its
    output shape; the page's diagram style (views.diagram_html) colours them."""
    import html
    colours = {"tap": "#9ca3af", "neck": "#6366f1", "head": "#22c55e", "decode": "#ec4899", "argmax": "#ec4899"}
    boxes = []
    for r in task_rows:
        kind = r.name.split(" ", 1)[0].split(".", 1)[0]
        boxes.append(f'<div class="cf-box" style="border-left-color:{colours.get(kind, "#9ca3af")}">'
                     f"<b>{html.escape(r.name)}</b><br><code>{html.escape(r.output_axes)}</code></div>")
    return '<div class="cf-flow">' + '<span class="cf-arrow">→</span>'.join(boxes) + "</div>"
