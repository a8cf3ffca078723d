"""The weights choice "Pretrained on COCO" for detection: DETR ResNet-50 (convformer.coco_detr) in Explore, with
boxes, COCO names and confidences on the photo, where each object's query looked (the decoder's
cross-attention, last layer and layer by layer), the encoder's self-attention for a clicked pixel, the
backbone's conv activations, Grad-CAM for a chosen box, and the shape table and diagram of the live model.

transformers is imported only when this choice is used (convformer.coco_detr.load). Weights are fetched on the
request's own thread, so the page's progress bar follows the download; an unreachable Hub with nothing cached
is one line on the page within seconds, and every other view of the app keeps working. A `CocoRun` keeps one
detection's maps (float16, the 16 strongest channels per stage) for the redraws, which need no model.
"""
from __future__ import annotations

import html
import time
from dataclasses import dataclass

import gradio as gr
import numpy as np
from huggingface_hub import constants
from PIL import Image, ImageDraw

from convformer.inspection import viz
from convformer.coco_detr import REPO, THRESHOLD, Detection, Row, WeightsUnavailable

from . import coco_texts, engine, views
from .i18n import text

coco_texts.register()

KIND = "coco"
DISPLAY = 480  # long side of the pictures
COLOURS = ("#e6194b", "#3cb44b", "#4363d8", "#f58231", "#911eb4", "#42d4f4", "#f032e6", "#bfef45", "#469990",
           "#9a6324")
TABLE_HEADERS = ["#", "class", "score", "x1", "y1", "x2", "y2"]
SHAPE_HEADERS = ["step", "input", "output", "params", "what"]
OUTPUTS = ("summary", "boxes", "table", "object", "query", "layers", "pixel", "stage", "channels", "shapes",
           "diagram", "state")  # what `detect` returns, in order


@dataclass
class CocoRun:
    """One detection on one photo, kept for the redraws (no model needed)."""
    photo: Image.Image                    # the photo at DISPLAY size
    size: tuple[int, int]                 # the photo's own (width, height)
    detections: list[Detection]
    grid: tuple[int, int]                 # the token grid (h, w)
    cross: np.ndarray                     # (layers, heads, Q, h*w) float16
    encoder: np.ndarray                   # (layers, N, N) float16, heads averaged
    channels: dict[str, np.ndarray]       # stage -> (16, h, w) the strongest channels
    image_path: str                       # for Grad-CAM, which runs the model again


def load():
    """The detector on the app's device, built once per cache location (engine.CACHE); gr.Error (one line)
    when it cannot be had. Called on the model thread: the download's tqdm bar shows in gr.Progress."""
    from convformer import coco_detr

    def said(name: str, size: int | None) -> None:
        gr.Info(text("coco.downloading", name=name, size=text("coco.size", mb=f"{size / 1e6:.0f}") if size else ""))

    def build() -> engine.Loaded:
        try:
            det = coco_detr.load(on_download=said)
        except WeightsUnavailable as e:
            raise gr.Error(views.clean(e)) from None
        det.model.to(engine.DEVICE)
        return engine.Loaded(det, det.labels)
    return engine.CACHE.get((KIND, REPO, str(constants.HF_HUB_CACHE), str(engine.DEVICE)), build)


def display(image: Image.Image) -> Image.Image:
    scale = DISPLAY / max(image.size)
    return image.convert("RGB").resize((max(1, round(image.width * scale)), max(1, round(image.height * scale))),
                                       Image.Resampling.BILINEAR)


def draw_boxes(photo: Image.Image, size: tuple[int, int], found: list[Detection]) -> Image.Image:
    """The boxes, numbered, with class and score, on the photo at display size."""
    out = photo.copy()
    pen = ImageDraw.Draw(out)
    sx, sy = photo.width / size[0], photo.height / size[1]
    for i, d in enumerate(found):
        x1, y1, x2, y2 = d.box
        colour = COLOURS[i % len(COLOURS)]
        pen.rectangle((x1 * sx, y1 * sy, x2 * sx, y2 * sy), outline=colour, width=3)
        label = f"{i + 1} {d.label} {d.score:.2f}"
        left, top = x1 * sx, max(0, y1 * sy - 12)
        pen.rectangle(pen.textbbox((left, top), label), fill=colour)
        pen.text((left, top), label, fill="white")
    return out


def object_choices(found: list[Detection]) -> list[tuple[str, str]]:
    return [(f"{i + 1}: {d.label} {d.score:.2f}", str(i)) for i, d in enumerate(found)]


def shape_table(rows: list[Row]) -> dict:
    from convformer.inspection import human
    data = [[r.name, r.input, r.output, human(r.params) if r.params else "", r.note] for r in rows]
    data.append([text("table.total"), "", "", human(sum(r.params for r in rows)), ""])
    return {"headers": SHAPE_HEADERS, "data": data}


KINDS = {"input": "input", "backbone": "conv", "input_projection": "proj", "tokens": "tokens", "encoder": "blocks",
         "object": "tokens", "decoder": "blocks", "class_head": "head", "box_head": "head", "post-process": "pool"}


def diagram_html(rows: list[Row]) -> str:
    """The pipeline as boxes with the live model's output shapes (views' diagram style)."""
    arrow = '<span class="cf-arrow">→</span>'
    boxes = [views.box(r.name, r.output, KINDS.get(r.name.split(".")[0].split(" ")[0], "norm")) for r in rows]
    style = ("<style>.cf-flow{display:flex;align-items:center;gap:6px;flex-wrap:wrap;font-size:12px}"
             ".cf-box{border:1px solid var(--border-color-primary);border-left:5px solid;border-radius:6px;"
             "padding:3px 6px;text-align:center;background:var(--background-fill-secondary);"
             "color:var(--body-text-color)}.cf-box code{font-size:11px;background:none;color:var(--body-text-color)}"
             ".cf-arrow{font-size:16px;color:var(--body-text-color-subdued)}</style>")
    return f'{style}<div class="cf-flow" id="coco-diagram">{arrow.join(boxes)}</div>'


def _check(r: CocoRun | None) -> CocoRun:
    if r is None:
        raise gr.Error(text("coco.first"))
    return r


def _object(r: CocoRun, choice: str | None) -> int:
    try:
        i = int(choice) if choice not in (None, "") else 0
    except (TypeError, ValueError):
        raise gr.Error(text("coco.no_object")) from None
    if not 0 <= i < len(r.detections):
        raise gr.Error(text("coco.no_object"))
    return i


def found(photo: Image.Image, threshold: float = THRESHOLD) -> tuple:
    """For the Detect task's own views (issue 23's seam, `DetectResult.of`): (the Detections-like value, the
    class names, a one-line notice). Runs the model: call it on the model thread."""
    from convformer import coco_detr

    loaded = load()
    with loaded.lock:
        r = coco_detr.inspect(loaded.model, photo, float(threshold))
    return r.as_detections(), loaded.classes, text("coco.notice", model=loaded.model.repo)


# ---- handlers ------------------------------------------------------------------------------------------
def detect(image: str | None, threshold: float = THRESHOLD,
           progress: gr.Progress = gr.Progress(track_tqdm=True)) -> tuple:
    """Run DETR on the photo: OUTPUTS (summary, boxes, table, object choice, query maps, pixel map, activations,
    shape table, diagram, the kept run)."""
    from convformer import coco_detr

    if not image:
        raise gr.Error(text("image.first"))
    photo = engine.picture(image)
    loaded = load()
    det = loaded.model
    with loaded.lock:  # inspect hooks the model: one at a time
        start = time.perf_counter()
        r = coco_detr.inspect(det, photo, float(threshold))
        ms = (time.perf_counter() - start) * 1e3
    channels = {}
    for stage, act in r.activations.items():
        a = viz.to_numpy(act)
        channels[stage] = a[viz.top_channels(a, 16)]
    run = CocoRun(display(photo), photo.size, r.detections, r.grid, r.cross.numpy().astype(np.float16),
                  r.encoder.numpy().astype(np.float16), channels, image)
    h, w = r.input_hw
    summary = (text("coco.found", n=len(r.detections), t=f"{threshold:.2f}", model=f"`{html.escape(det.repo)}`",
                    h=h, w=w, gh=r.grid[0], gw=r.grid[1], ms=f"{ms:.0f}", device=engine.device_name())
               if r.detections else text("coco.none", t=f"{threshold:.2f}"))
    table = [[i + 1, d.label, round(d.score, 3), *(round(v, 1) for v in d.box)] for i, d in enumerate(r.detections)]
    choices = object_choices(r.detections)
    first = choices[0][1] if choices else None
    query, layers = object_maps(run, first) if first is not None else (None, [])
    stage = list(channels)[-1]
    return (summary, draw_boxes(run.photo, run.size, run.detections), {"headers": TABLE_HEADERS, "data": table},
            gr.update(choices=choices, value=first), query, layers, pixel_map(run, None),
            gr.update(choices=list(channels), value=stage), channel_picture(run, stage), shape_table(r.rows),
            diagram_html(r.rows), run)


def object_maps(r: CocoRun | None, choice: str | None, head: str | None = None) -> tuple:
    """Where the chosen object's query looked: the last decoder layer, and a gallery of every layer."""
    r = _check(r)
    d = r.detections[_object(r, choice)]
    heads = r.cross.shape[1]
    h = int(head) if head not in (None, "", "mean") and str(head).isdigit() and int(head) < heads else None

    def picture(layer: int) -> Image.Image:
        a = r.cross[layer, :, d.query] if h is None else r.cross[layer, h:h + 1, d.query]
        values = a.astype(np.float32).mean(0).reshape(r.grid)
        return draw_boxes(viz.overlay(r.photo, values, 0.55), r.size, [d])
    layers = [(picture(i), text("coco.layer_n", n=i + 1)) for i in range(r.cross.shape[0])]
    return layers[-1][0], layers


def pixel_map(r: CocoRun | None, point: tuple[float, float] | None, layer: int = -1) -> Image.Image:
    """Where the encoder token under a photo pixel looked (default: the centre), with the pixel marked."""
    r = _check(r)
    x, y = point if point is not None else (r.size[0] / 2, r.size[1] / 2)
    gh, gw = r.grid
    col, row = min(max(int(x / r.size[0] * gw), 0), gw - 1), min(max(int(y / r.size[1] * gh), 0), gh - 1)
    layer = int(layer) if -r.encoder.shape[0] <= int(layer) < r.encoder.shape[0] else -1
    values = r.encoder[layer, row * gw + col].astype(np.float32).reshape(r.grid)
    out = viz.overlay(r.photo, values, 0.55)
    px, py = x * r.photo.width / r.size[0], y * r.photo.height / r.size[1]
    ImageDraw.Draw(out).ellipse((px - 6, py - 6, px + 6, py + 6), outline="white", width=3)
    return out


def click(r: CocoRun | None, layer: float, evt: gr.SelectData) -> tuple:
    """A click on the encoder map (display pixels) -> the photo pixel under it, and its map."""
    r = _check(r)
    dx, dy = evt.index
    x, y = dx * r.size[0] / r.photo.width, dy * r.size[1] / r.photo.height
    return x, y, pixel_map(r, (x, y), int(layer) - 1)


def pixel(r: CocoRun | None, x: float, y: float, layer: float = 6) -> Image.Image:
    """The encoder map for photo pixel (x, y) in encoder layer `layer` (1 = first); no pixel yet: the centre."""
    point = (float(x), float(y)) if x is not None and y is not None else None
    return pixel_map(r, point, int(layer) - 1)


def channel_picture(r: CocoRun | None, stage: str | None) -> Image.Image:
    r = _check(r)
    stage = stage if stage in r.channels else list(r.channels)[-1]
    return viz.tile(r.channels[stage], cell=96)


def cam(r: CocoRun | None, choice: str | None) -> Image.Image:
    """Grad-CAM for the chosen box: its query's class logit on the backbone's last map (runs the model)."""
    from convformer import coco_detr

    r = _check(r)
    d = r.detections[_object(r, choice)]
    loaded = load()
    with loaded.lock:
        values = coco_detr.grad_cam(loaded.model, engine.picture(r.image_path), d.query, d.class_id)
    return draw_boxes(viz.overlay(r.photo, values, 0.5), r.size, [d])
