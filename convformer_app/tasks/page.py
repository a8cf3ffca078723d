"""The task views' layout and events in Explore: the Task choice, the Detect / Segment buttons beside Run, and
their panels. explore_page calls `choice()` and `buttons()` in its controls column, `panels()` where the
results go, then `wire(...)` with the components the task views read."""
from __future__ import annotations

from dataclasses import dataclass

import gradio as gr

from .. import engine as session, i18n
from ..i18n import tr
from . import handlers, inspect, results
from .handlers import TASKS


def choice() -> gr.Radio:
    """The Task choice: classify (the classifier views), detect or segment."""
    return gr.Radio(i18n.choices({t: f"task.{t}" for t in TASKS}), value="classify", label=tr("task.choice"),
                    info=tr("task.info"), elem_id="task")


@dataclass
class Buttons:
    detect: gr.Button
    segment: gr.Button


def buttons() -> Buttons:
    """The Detect and Segment buttons (shown instead of Run when their task is chosen)."""
    return Buttons(gr.Button(tr("task.run_detect"), variant="primary", visible=False, elem_id="detect-run", scale=2),
                   gr.Button(tr("task.run_segment"), variant="primary", visible=False, elem_id="segment-run", scale=2))


@dataclass
class Scene:
    number: gr.Number
    render: gr.Button


def scene_controls() -> Scene:
    """A Shapes scene as the image (its true boxes and mask are known): shown while a task is chosen."""
    with gr.Row(equal_height=True):
        number = gr.Number(0, precision=0, minimum=0, maximum=999_999, label=tr("scene.index"),
                           elem_id="scene-index", visible=False, min_width=100)
        render = gr.Button(tr("scene.render"), size="sm", visible=False, elem_id="scene-render", min_width=100)
    return Scene(number, render)


@dataclass
class Panels:
    detect: gr.Column
    segment: gr.Column
    threshold: gr.Slider
    head: gr.Radio
    detector: gr.Radio
    d: dict   # DETECT_OUTPUTS name -> component
    s: dict   # SEGMENT_OUTPUTS name -> component


def panels() -> Panels:
    """The Detect and Segment results (hidden until their task is chosen)."""
    with gr.Column(visible=False, elem_id="detect-panel") as detect:
        gr.Markdown(tr("detect.explain"))
        with gr.Row():
            threshold = gr.Slider(0, 1, handlers.DEFAULT_THRESHOLD, step=0.05, label=tr("detect.threshold"),
                                  info=tr("detect.threshold_info"), elem_id="threshold")
            head = gr.Radio(list(handlers.HEADS["detect"]), value=handlers.HEADS["detect"][0], label=tr("task.head"),
                            info=tr("task.head_info"), elem_id="detect-head")
            detector = gr.Radio(i18n.choices({d: f"detector.{d}" for d in handlers.DETECTORS}), value="shapes",
                                label=tr("detector.choice"), elem_id="detector")
        d_summary = gr.Markdown(elem_id="detect-summary")
        with gr.Row(equal_height=False):
            boxes = gr.Image(label=tr("detect.image"), interactive=False, format="png", elem_id="detect-boxes",
                             scale=3, height=460)
            with gr.Column(scale=2, min_width=260):
                table = gr.Dataframe(headers=results.DETECTION_HEADERS, interactive=False, label=tr("detect.table"),
                                     elem_id="detect-table", max_height=360)
        with gr.Row(equal_height=False):
            with gr.Column():
                heat_class = gr.Dropdown([], label=tr("detect.heat_class"), elem_id="heat-class",
                                         allow_custom_value=True)
                heatmap = gr.Image(label=tr("detect.heatmap"), interactive=False, format="jpeg", elem_id="heatmap",
                                   height=360)
            with gr.Column():
                query_note = gr.Markdown(elem_id="query-note")
                query = gr.Image(label=tr("detect.query"), interactive=False, format="jpeg", elem_id="query-map",
                                 height=360)
    with gr.Column(visible=False, elem_id="segment-panel") as segment:
        gr.Markdown(tr("segment.explain"))
        s_summary = gr.Markdown(elem_id="segment-summary")
        with gr.Row(equal_height=False):
            mask = gr.Image(label=tr("segment.image"), interactive=False, format="png", elem_id="segment-mask",
                            scale=3, height=460)
            iou = gr.Dataframe(headers=["class", "IoU", "predicted px", "true px"], interactive=False,
                               label=tr("segment.iou"), elem_id="segment-iou", scale=2)
    d_state, s_state = gr.State(None, time_to_live=3600), gr.State(None, time_to_live=3600)
    d = dict(boxes=boxes, table=table, summary=d_summary, heat_class=heat_class, heatmap=heatmap, query=query,
             query_note=query_note, state=d_state)
    s = dict(mask=mask, iou=iou, summary=s_summary, state=s_state)
    return Panels(detect, segment, threshold, head, detector, d, s)


def cam_controls() -> tuple[gr.Dropdown, gr.Dropdown]:
    """Grad-CAM's target and layer for a task model (a box or a class; the backbone's conv layers), shown in
    the Grad-CAM tab instead of the classifier's while another task is chosen."""
    return (gr.Dropdown([(tr("cam.predicted"), inspect.PREDICTED)], value=inspect.PREDICTED, label=tr("cam.target"),
                        allow_custom_value=True, visible=False, elem_id="task-cam-target"),
            gr.Dropdown([], value="", label=tr("cam.layer"), allow_custom_value=True, visible=False,
                        elem_id="task-cam-layer"))


CLASSIFY_ONLY = ("label", "caution", "cam_target", "cam_layer", "top_k", "preset", "hparams", "config_status")


def wire(task: gr.Radio, run: gr.Button, b: Buttons, scene: Scene, p: Panels, cams: tuple, named: dict, resize,
         trained) -> None:
    """The task views' events. `named`: explore_page's components by name (image, controls, the views that
    `handlers.explain` fills, and CLASSIFY_ONLY: what is hidden while another task is chosen; a task model is
    its stage's Shapes architecture, so the preset and hyperparameters do not apply)."""
    classify_only = [named[k] for k in CLASSIFY_ONLY]

    def show(chosen: str) -> tuple:
        is_task = chosen in ("detect", "segment")
        return (gr.update(visible=chosen == "classify"), gr.update(visible=chosen == "detect"),
                gr.update(visible=chosen == "segment"), gr.update(visible=chosen == "detect"),
                gr.update(visible=chosen == "segment"), gr.update(visible=is_task), gr.update(visible=is_task),
                *(gr.update(visible=is_task) for _ in cams), *(gr.update(visible=not is_task) for _ in classify_only))

    task.change(show, task, [run, b.detect, b.segment, p.detect, p.segment, scene.number, scene.render, *cams,
                             *classify_only], api_visibility="private", queue=False)
    image, fusion, weights, checkpoint = (named[k] for k in ("image", "fusion", "weights", "checkpoint"))
    views = dict(named, task_cam_target=cams[0], task_cam_layer=cams[1])
    explain_in = [image, task, fusion, weights, p.head, checkpoint, trained, *cams, resize, p.d["state"], p.detector]
    explain_out = [views[k] for k in handlers.EXPLAIN_OUTPUTS]
    d_out = [p.d[k] for k in handlers.DETECT_OUTPUTS]
    s_out = [p.s[k] for k in handlers.SEGMENT_OUTPUTS]
    gr.on([b.detect.click, p.threshold.release, p.head.input, p.detector.input], session.guard(handlers.detect),
          [image, fusion, weights, p.threshold, p.head, checkpoint, trained, p.detector], d_out, api_name="detect",
          trigger_mode="always_last").success(  # a press while a run is on: one more run with the latest values
        session.guard(handlers.explain), explain_in, explain_out, api_visibility="private")
    b.segment.click(session.guard(handlers.segment), [image, fusion, weights, checkpoint, trained], s_out,
                    api_name="segment").success(session.guard(handlers.explain), explain_in, explain_out,
                                                api_visibility="private")
    gr.on([c.input for c in cams], session.guard(handlers.explain), explain_in, explain_out, api_name="task_explain")
    p.d["heat_class"].input(session.handled(handlers.redraw_heatmap), [p.d["state"], p.d["heat_class"]],
                            p.d["heatmap"], api_name="detect_heatmap")
    p.d["boxes"].select(session.handled(handlers.click_box), p.d["state"],
                        [p.d["boxes"], p.d["query"], p.d["query_note"]], api_name="detect_click")
    scene.render.click(session.guard(handlers.make_scene), scene.number, image, api_name="scene")
    p.detector.change(lambda d: gr.update(visible=d != "coco"), p.detector, p.head,  # DETR has its own head
                      api_visibility="private", queue=False, show_progress="hidden")


def compare_section(image) -> None:
    """In the Compare tab: every stage on one task, on the tab's image (`image`)."""
    from . import compare
    gr.Markdown(tr("tcompare.title"))
    gr.Markdown(tr("tcompare.explain"))
    with gr.Row(equal_height=False):
        task = gr.Radio(i18n.choices({t: f"task.{t}" for t in TASKS[1:]}), value="detect", label=tr("tcompare.task"),
                        elem_id="compare-task", scale=2)
        run = gr.Button(tr("tcompare.run"), variant="primary", elem_id="compare-task-run", scale=1)
    gallery = gr.Gallery(label=tr("tcompare.gallery"), columns=5, height=260, allow_preview=True, interactive=False,
                         elem_id="compare-task-gallery")
    table = gr.Dataframe(headers=compare.HEADERS, interactive=False, label=tr("tcompare.table"),
                         elem_id="compare-task-table")
    run.click(session.guard(compare.compare_task), [task, image], [gallery, table], api_name="compare_task")
    gr.on(None, compare.empty_table, None, table, api_name=False, show_progress="hidden")  # on load: its language


def train_section(trained: gr.State) -> None:
    """In the Train tab: a detector or segmenter trained live; its checkpoint goes to `trained`."""
    from convformer.config import FUSIONS
    from . import train
    gr.Markdown(tr("ttrain.title"))
    gr.Markdown(tr("ttrain.explain"))
    with gr.Row(equal_height=False):
        task = gr.Radio(i18n.choices({t: f"task.{t}" for t in TASKS[1:]}), value="detect", label=tr("ttrain.task"),
                        elem_id="train-task")
        fusion = gr.Radio(i18n.choices({f: f"fusion.{f}" for f in FUSIONS}), value="mid", label=tr("ctl.fusion"),
                          elem_id="train-task-fusion")
        head = gr.Radio(list(handlers.HEADS["detect"]), value=handlers.HEADS["detect"][0], label=tr("task.head"),
                        elem_id="train-task-head")
    with gr.Row(equal_height=False):
        seconds = gr.Slider(10, train.MAX_SECONDS, 60, step=10, label=tr("ttrain.seconds"), scale=2)
        start = gr.Button(tr("ttrain.start"), variant="primary", elem_id="train-task-run", scale=1)
        stop = gr.Button(tr("ttrain.stop"), elem_id="train-task-stop", scale=1)
    status = gr.Markdown(elem_id="train-task-status")
    plot = gr.LinePlot(x="seconds", y="metric", color="series", y_lim=[0, 1], height=260,
                       label=tr("ttrain.curve"), elem_id="train-task-plot")
    start.click(train.train_task, [task, fusion, head, seconds], [status, plot, trained], api_name="train_task",
                concurrency_limit=2)
    stop.click(train.stop, None, status, api_name="stop_task", queue=False)
