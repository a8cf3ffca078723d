"""The task views' layout and events in Explore: the Task choice, the Detect / Segment buttons beside Run, and
their panels. explore_page calls `choice()` and `buttons()` in its controls column, `panels()` where the
results go, then `wire(...)` with the components the task views read."""
from __future__ import annotations

from dataclasses import dataclass

import gradio as gr

from .. import i18n, session
from ..i18n import tr
from . import handlers
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
    return Buttons(gr.Button(tr("task.detect"), variant="primary", visible=False, elem_id="detect-run", scale=2),
                   gr.Button(tr("task.segment"), variant="primary", visible=False, elem_id="segment-run", scale=2))


@dataclass
class Panels:
    detect: gr.Column
    segment: gr.Column
    threshold: gr.Slider
    scene: gr.Number
    scene_btn: gr.Button
    d: dict   # DETECT_OUTPUTS name -> component
    s: dict   # SEGMENT_OUTPUTS name -> component


def panels() -> Panels:
    """The Detect and Segment results (hidden until their task is chosen)."""
    with gr.Row(equal_height=False):
        scene = gr.Number(0, precision=0, minimum=0, maximum=999_999, label=tr("scene.index"), elem_id="scene-index",
                          visible=False, scale=1, min_width=120)
        scene_btn = gr.Button(tr("scene.render"), size="sm", visible=False, elem_id="scene-render", scale=1)
    with gr.Column(visible=False, elem_id="detect-panel") as detect:
        gr.Markdown(tr("detect.explain"))
        threshold = gr.Slider(0, 1, handlers.DEFAULT_THRESHOLD, step=0.05, label=tr("detect.threshold"),
                              info=tr("detect.threshold_info"), elem_id="threshold")
        d_summary = gr.Markdown(elem_id="detect-summary")
        with gr.Row(equal_height=False):
            boxes = gr.Image(label=tr("detect.image"), interactive=False, format="png", elem_id="detect-boxes",
                             scale=3)
            with gr.Column(scale=2, min_width=260):
                table = gr.Dataframe(headers=["#", "class", "score", "x1", "y1", "x2", "y2"], interactive=False,
                                     label=tr("detect.table"), elem_id="detect-table", max_height=360)
        with gr.Row(equal_height=False):
            with gr.Column():
                heat_class = gr.Dropdown([], label=tr("detect.heat_class"), elem_id="heat-class",
                                         allow_custom_value=True)
                heatmap = gr.Image(label=tr("detect.heatmap"), interactive=False, format="jpeg", elem_id="heatmap")
            with gr.Column():
                query_note = gr.Markdown(elem_id="query-note")
                query = gr.Image(label=tr("detect.query"), interactive=False, format="jpeg", elem_id="query-map")
    with gr.Column(visible=False, elem_id="segment-panel") as segment:
        gr.Markdown(tr("segment.explain"))
        s_summary = gr.Markdown(elem_id="segment-summary")
        with gr.Row(equal_height=False):
            mask = gr.Image(label=tr("segment.image"), interactive=False, format="png", elem_id="segment-mask",
                            scale=3)
            iou = gr.Dataframe(headers=["class", "IoU", "predicted px", "true px"], interactive=False,
                               label=tr("segment.iou"), elem_id="segment-iou", scale=2)
    d_state, s_state = gr.State(None, time_to_live=3600), gr.State(None, time_to_live=3600)
    d = dict(boxes=boxes, table=table, summary=d_summary, heat_class=heat_class, heatmap=heatmap, query=query,
             query_note=query_note, state=d_state)
    s = dict(mask=mask, iou=iou, summary=s_summary, state=s_state)
    return Panels(detect, segment, threshold, scene, scene_btn, d, s)


def wire(task: gr.Radio, run: gr.Button, b: Buttons, p: Panels, classify_only: list, image, fusion, weights,
         checkpoint, trained) -> None:
    """The task views' events. `classify_only`: the classifier's results, hidden while another task is chosen."""
    def show(chosen: str) -> tuple:
        is_task = chosen in ("detect", "segment")
        return (gr.update(visible=chosen == "classify"), gr.update(visible=chosen == "detect"),
                gr.update(visible=chosen == "segment"), gr.update(visible=chosen == "detect"),
                gr.update(visible=chosen == "segment"), gr.update(visible=is_task), gr.update(visible=is_task),
                *(gr.update(visible=not is_task) for _ in classify_only))

    task.change(show, task, [run, b.detect, b.segment, p.detect, p.segment, p.scene, p.scene_btn, *classify_only],
                api_visibility="private", queue=False)
    d_out = [p.d[k] for k in handlers.DETECT_OUTPUTS]
    s_out = [p.s[k] for k in handlers.SEGMENT_OUTPUTS]
    gr.on([b.detect.click, p.threshold.release], session.guard(handlers.detect),
          [image, fusion, weights, p.threshold, checkpoint, trained], d_out, api_name="detect")
    b.segment.click(session.guard(handlers.segment), [image, fusion, weights, checkpoint, trained], s_out,
                    api_name="segment")
    p.d["heat_class"].input(session.handled(handlers.redraw_heatmap), [p.d["state"], p.d["heat_class"]],
                            p.d["heatmap"], api_name="detect_heatmap")
    p.d["boxes"].select(session.handled(handlers.click_box), p.d["state"],
                        [p.d["boxes"], p.d["query"], p.d["query_note"]], api_name="detect_click")
    p.scene_btn.click(session.guard(handlers.make_scene), p.scene, image, api_name="scene")
