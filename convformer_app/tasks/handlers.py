"""The Detect and Segment handlers (Explore's task views and the /detect and /segment endpoints), as plain
typed functions; tasks/page.py lays them out and wires them.

A request loads the task model once (session.CACHE, keyed by task, stage and weights), runs the library's
`detect` / `segment` on the decoded image and keeps a `DetectResult` / `SegmentResult` (tasks/results.py) in
the session's state: a new heatmap class or a clicked box re-draws from it without the model.
"""
from __future__ import annotations

import html
import re
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path

import gradio as gr
import numpy as np
from PIL import Image

from convformer.config import FUSIONS

from .. import engine as session, safety, views
from ..i18n import text
from ..views import clean
from . import inspect, results, tables
from .results import DetectResult, SegmentResult

TASKS = ("classify", "detect", "segment")
HEADS = {"detect": ("dense", "set"), "segment": ("segformer",)}  # as convformer.tasks' table; first: default
TASK_WEIGHTS = ("bundled", "random", "upload", "trained")
DETECTORS = ("shapes", "coco")  # our task model of the chosen stage, or DETR pretrained on COCO (issue 24)
DEFAULT_THRESHOLD = 0.3


# ---- the model -----------------------------------------------------------------------------------------
def _checkpoint(weights: str, checkpoint: str | None, trained: str | None) -> str | None:
    """The checkpoint file a weights choice names (None for bundled / random), or gr.Error."""
    if weights == "upload":
        if not checkpoint:
            raise gr.Error("Upload a .safetensors checkpoint first, or choose other weights.")
        if Path(checkpoint).suffix.lower() != ".safetensors":
            raise gr.Error("Only .safetensors checkpoints are accepted (pickled .pt / .pth / .bin files can run "
                           "code when loaded, so they are refused).")
        return checkpoint
    if weights == "trained":
        if not trained or not Path(trained).is_file():
            raise gr.Error("Nothing has been trained in this browser session yet: train a model in the Train tab "
                           "first, or choose other weights.")
        return trained
    return None


@dataclass
class TaskLoaded(session.Loaded):
    notice: str = ""  # what the weights are, said above the results


def task_model(task: str, fusion: str, weights: str = "bundled", checkpoint: str | None = None,
               trained: str | None = None, head: str = "") -> TaskLoaded:
    """The task model a request runs (built once per task, stage, head and weights file version), or gr.Error
    with one line: an unknown task, stage or weights choice, a checkpoint that is not a task checkpoint, or
    one of another task."""
    from convformer.tasks import create_task_model
    if task not in TASKS[1:]:
        raise gr.Error(text("task.unknown", task=safety.shown(task, 40), choices=", ".join(TASKS[1:])))
    if fusion not in FUSIONS:
        raise gr.Error(f"fusion={safety.shown(fusion, 40)} is not allowed: expected one of {', '.join(FUSIONS)}")
    if weights not in TASK_WEIGHTS:
        raise gr.Error(text("task.no_weights", weights=safety.shown(weights, 40), task=task,
                            choices=", ".join(TASK_WEIGHTS)))
    if head not in HEADS.get(task, ()) and head:
        raise gr.Error(f"head={safety.shown(head, 40)} is not allowed: expected one of {', '.join(HEADS[task])}")
    path = _checkpoint(weights, checkpoint, trained)
    stamp = (path, Path(path).stat().st_size, Path(path).stat().st_mtime_ns) if path else ()
    extra = {"head": head} if head and head != HEADS[task][0] and not path else {}  # a checkpoint says its own

    def build() -> TaskLoaded:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                model = create_task_model(task, fusion, weights=path or weights, **extra)
            except (ValueError, OSError) as e:  # CheckpointError is a ValueError
                raise gr.Error(clean(e)) from None
        said = " ".join(str(w.message) for w in caught if issubclass(w.category, UserWarning))
        return TaskLoaded(model.to(session.DEVICE).eval(), list(model.class_names), notice=said)

    key = ("task", task, fusion, head, weights, stamp, str(session.DEVICE))
    loaded = session.CACHE.get(key, build)
    found = getattr(loaded.model, "task", "classify")
    if found != task:
        raise gr.Error(text("task.wrong_task", found=found, task=task))
    return loaded


def weights_line(loaded: TaskLoaded, weights: str) -> str:
    """One line: which model runs (task, stage, head) and what its weights are."""
    model = loaded.model
    meta = getattr(model, "meta", {}) or {}
    metrics = meta.get("metrics") or {}
    # the headline only: the metric on the unseen test split (the record's other keys are for the curious)
    named = {"test_map_50": "test mAP@0.5", "test_miou": "test mIoU"}
    shown = {named[k]: metrics[k] for k in named if k in metrics} or metrics
    scored = html.escape(", ".join(f"{k} {v:.3f}" for k, v in shown.items()  # a header's keys: escaped
                                   if isinstance(v, (int, float)) and not isinstance(v, bool))[:200])
    what = text(f"task.weights_{weights}") + (f" ({scored})" if scored else "")
    line = text("task.weights", task=model.task, fusion=model.config.fusion, head=model.head_kind, weights=what)
    return line + (f" ⚠ {clean(loaded.notice)}" if loaded.notice else "")


# ---- detect --------------------------------------------------------------------------------------------
def threshold_of(value: float | str | None) -> float:
    """The score threshold as a float in [0, 1], or gr.Error naming the value."""
    try:
        t = float(value if value is not None else DEFAULT_THRESHOLD)
    except (TypeError, ValueError):
        t = float("nan")
    if not 0.0 <= t <= 1.0:  # NaN fails too
        raise gr.Error(text("detect.threshold_bad", value=safety.shown(value, 40)))
    return t


DETECT_OUTPUTS = ("boxes", "table", "summary", "heat_class", "heatmap", "query", "query_note", "state")


def detect(image: str | None, fusion: str = "mid", weights: str = "bundled", threshold: float = DEFAULT_THRESHOLD,
           head: str = "dense", checkpoint: str | None = None, trained: str | None = None,
           detector: str = "shapes") -> tuple:
    """Detect objects in the image: (the image with boxes, the detections table, a summary, the heatmap
    class chooser, the heatmap, where the first box's query looked, its note, the kept result), in the order
    of DETECT_OUTPUTS. Boxes are in the uploaded image's own pixels. head: dense (CenterNet) or set (DETR).
    detector: "shapes" (the stage's task model) or "coco" (DETR ResNet-50 pretrained on COCO, for photos)."""
    from convformer.tasks import detect as run_detect
    t = threshold_of(threshold)
    shown = session.picture(image)
    if detector not in DETECTORS:
        raise gr.Error(f"detector={safety.shown(detector, 40)} is not allowed: expected one of {', '.join(DETECTORS)}")
    if detector == "coco":  # another detector, the same views (the seam: DetectResult.of)
        from .. import coco
        found, names, notice = coco.found(shown, t)
        return show_detections(DetectResult.of(found, shown, names, t), notice)
    loaded = task_model("detect", fusion, weights, checkpoint, trained, head)
    with loaded.lock:
        found = run_detect(loaded.model, shown, score_threshold=t)
    return show_detections(DetectResult.of(found, shown, loaded.classes, t), weights_line(loaded, weights))


def show_detections(r: DetectResult, notice: str = "") -> tuple:
    """Every detect output for a result, whatever detector made it (the seam: see tasks/results.py); `notice`
    says what the detector is."""
    n = len(r.boxes)
    summary = text("detect.found", n=n, t=f"{r.threshold:g}") if n else text("detect.none", t=f"{r.threshold:g}")
    summary = f"{notice}  \n{summary}" if notice else summary
    classes = [(views.class_name(name), str(i)) for i, name in enumerate(r.class_names)]
    first = str(int(r.labels[0])) if n else "0"
    chooser = gr.update(choices=classes, value=first, visible=r.heatmaps is not None)
    query = results.query_picture(r, 0 if n else None)
    note = query_note(r, 0) if n else ""
    heatmap = gr.update(value=results.heatmap_picture(r, int(first)), visible=r.heatmaps is not None)
    query = gr.update(value=query, visible=r.attention is not None)  # a dense head has no queries
    return results.boxes_picture(r), detection_table(r), summary, chooser, heatmap, query, note, safety.keep(r)


def detection_table(r: DetectResult) -> dict:
    """The detections table, its headers in the page's language."""
    headers = ["#", text("detect.col_class"), text("detect.col_score"), "x1", "y1", "x2", "y2",
               text("detect.col_second")]
    return {"headers": headers, "data": results.detection_rows(r, views.class_name)}


def query_note(r: DetectResult, i: int) -> str:
    if r.attention is None:
        return text("detect.no_query")
    return text("detect.query_of", i=i, name=views.class_name(r.name(i)), score=f"{r.scores[i]:.2f}")


def redraw_heatmap(r: DetectResult | None, class_index: str | None) -> Image.Image | None:
    """The chosen class's heatmap from the kept result (no model)."""
    if r is None:
        raise gr.Error("Run the model first.")
    try:
        k = int(class_index) if class_index not in (None, "") else None
    except ValueError:
        raise gr.Error(f"class={safety.shown(class_index, 40)} is not allowed: expected a class number") from None
    return results.heatmap_picture(r, k)


def click_box(r: DetectResult | None, evt: gr.SelectData) -> tuple:
    """A click on the boxes picture: (the picture with that box picked out, where its query looked, a note)."""
    if r is None:
        raise gr.Error("Run the model first.")
    point = evt.index if isinstance(evt.index, (list, tuple)) and len(evt.index) >= 2 else None
    i = results.clicked_box(r, point) if point is not None else None
    if i is None:
        return results.boxes_picture(r), gr.skip(), text("detect.no_box")
    return results.boxes_picture(r, i), results.query_picture(r, i), query_note(r, i)


# ---- segment -------------------------------------------------------------------------------------------
SEGMENT_OUTPUTS = ("mask", "iou", "summary", "state")


def segment(image: str | None, fusion: str = "mid", weights: str = "bundled", checkpoint: str | None = None,
            trained: str | None = None) -> tuple:
    """A class for every pixel: (the mask over the image with a legend, IoU per class when the image is a
    Shapes scene, a summary, the kept result), in the order of SEGMENT_OUTPUTS."""
    from convformer.tasks import segment as run_segment
    shown = session.picture(image)
    loaded = task_model("segment", fusion, weights, checkpoint, trained)
    with loaded.lock:
        found = run_segment(loaded.model, shown)
    names = list(found.class_names)  # "background" first
    r = SegmentResult.of(found, shown, names, scene_truth(image, shown))
    rows = results.iou_rows(r)
    present = [views.class_name(r.class_names[c]) for c in np.unique(r.mask) if 0 < c < len(r.class_names)]
    summary = text("segment.found", names=", ".join(present)) if present else text("segment.none")
    miou = results.mean_iou(rows)
    summary += text("segment.miou", miou=f"{miou:.3f}") if miou is not None else text("segment.no_truth")
    summary = f"{weights_line(loaded, weights)}  \n{summary}"
    headers = [text("detect.col_class"), "IoU", text("segment.col_pred"), text("segment.col_true")]
    rows = [[views.class_name(name), *rest] for name, *rest in rows]  # the class names in the page's language
    return results.mask_picture(r), {"headers": headers, "data": rows}, summary, safety.keep(r)


# ---- Shapes scenes: an image whose true mask is known --------------------------------------------------
SCENES = Path(tempfile.gettempdir()) / "convformer_scenes"
SCENE_NAME = re.compile(r"scene-(train|val|test)-(\d{1,6})-(\d{1,6})-(\d{2,4})")
SCENE_SIZE = 256


def make_scene(index: float | int = 0, split: str = "test", seed: int = 0) -> str:
    """Render Shapes scene `index` to a PNG (its name says how: scene-<split>-<index>-<seed>-<size>.png)."""
    from convformer.tasks import render_scene
    index = int(index)
    if not 0 <= index <= 999_999:
        raise gr.Error(f"scene={index} is not allowed: expected a number from 0 to 999999")
    path = SCENES / f"scene-{split}-{index}-{seed}-{SCENE_SIZE}.png"
    if not path.is_file():
        SCENES.mkdir(parents=True, exist_ok=True)
        part = path.with_suffix(".part")
        render_scene(index, split, seed, SCENE_SIZE).image.save(part, format="PNG")
        part.replace(path)
    return str(path)


def scene_truth(path: str | None, shown: Image.Image) -> np.ndarray | None:
    """The true semantic mask when the image IS a Shapes scene: its file name names one and its pixels are
    that scene's (a renamed photo gets no score)."""
    from convformer.tasks import render_scene
    found = SCENE_NAME.match(Path(path or "").stem)
    if not found:
        return None
    split, index, seed, size = found.groups()
    scene = render_scene(int(index), split, int(seed), int(size))
    if scene.image.size != shown.size or not np.array_equal(np.asarray(scene.image.convert("RGB")),
                                                            np.asarray(shown.convert("RGB"))):
        return None
    return np.asarray(scene.semantic, dtype=np.uint8)


# ---- Explore's existing views on the task model --------------------------------------------------------
# what `explain` returns, in order: names of explore_page's components (cam_target / cam_layer are the task's own)
EXPLAIN_OUTPUTS = ("stats", "maps_note", "rollout", "patch", "query", "blocks", "heads", "channels", "cam", "table",
                   "diagram", "run", "point", "block", "head", "stage", "task_cam_target", "task_cam_layer",
                   "cam_note", "relevance", "relevance_note")


def explain(image: str | None, task: str = "detect", fusion: str = "mid", weights: str = "bundled",
            head: str = "dense", checkpoint: str | None = None, trained: str | None = None,
            cam_target: str = inspect.PREDICTED, cam_layer: str = "", resize: str = "keep",
            kept: DetectResult | None = None, detector: str = "shapes") -> tuple:
    """Explore's views (attention per block and head, rollout, click-a-patch, conv activations, Grad-CAM for a
    box or a class, the shape table and diagram through the head) for the task model, in the order of
    EXPLAIN_OUTPUTS. `kept`: the last detections, whose boxes Grad-CAM can explain ("box i")."""
    from convformer.data import RESIZES
    from ..explore import handlers as explore
    if task == "detect" and detector == "coco":  # DETR's own maps, not the previous model's (issue 24)
        from . import detr_views
        views_ = detr_views.explain(image)
        return tuple(views_[k] for k in EXPLAIN_OUTPUTS)
    if resize not in RESIZES:
        raise gr.Error(f"resize={safety.shown(resize, 40)} is not allowed: expected one of {', '.join(RESIZES)}")
    shown = session.picture(image)
    loaded = task_model(task, fusion, weights, checkpoint, trained, head if task == "detect" else "")
    boxes = _box_targets(kept, loaded.model) if task == "detect" and kept is not None else None
    if cam_target.startswith(inspect.BOX) and (boxes is None or not cam_target[len(inspect.BOX):].isdigit()
                                               or int(cam_target[len(inspect.BOX):]) >= len(boxes)):
        cam_target = inspect.PREDICTED
    try:
        r = inspect.task_run(loaded, shown, cam_target, cam_layer or None, boxes, resize)
    except ValueError as e:
        raise gr.Error(clean(e)) from None
    blocks = list(r.attentions)
    block = blocks[-1] if blocks else None
    patch, query = views.query_pictures(r, block, None, None)
    stages = list(r.channels)
    n_boxes = len(boxes) if boxes is not None else 0
    targets = [(text("cam.predicted"), inspect.PREDICTED), *((views.class_name(c), c) for c in r.classes),
               *((f"{inspect.BOX}{i} ({kept.name(i)})", f"{inspect.BOX}{i}") for i in range(n_boxes))]
    heads = len(r.attentions[block]) if block else 0
    return (r.stats, explore.maps_note(r), views.rollout_picture(r), patch, query, *views.block_pictures(r, block),
            views.channels_picture(r, stages[-1] if stages else None), views.cam_picture(r),
            *tables.shape_views(r.shapes, r.fusion), safety.keep(r), None,
            gr.update(choices=blocks, value=block),
            gr.update(choices=explore.head_choices(heads), value="mean of heads"),
            gr.update(choices=stages, value=stages[-1] if stages else None),
            gr.update(choices=targets, value=cam_target),
            gr.update(choices=r.conv_layers, value=next(iter(r.cam), None)), views.cam_note(r),
            None, text("tview.relevance_task"))  # relevance explains a classifier's class


def _box_targets(kept: DetectResult, model) -> np.ndarray:
    """Per kept detection (cy, cx as fractions of the image, class, query) for Grad-CAM's "box i"."""
    w, h = kept.size
    b = np.asarray(kept.boxes).reshape(-1, 4)
    queries = kept.queries if kept.queries is not None else np.zeros(len(b), np.int64)
    return np.stack([(b[:, 1] + b[:, 3]) / 2 / h, (b[:, 0] + b[:, 2]) / 2 / w, kept.labels, queries], 1) \
        if len(b) else np.zeros((0, 4))
