"""The Compare tab's layout and events; its handlers live in handlers.py (our five models) and references.py
(the published references). app.py calls `build` inside the tab."""
from __future__ import annotations

from dataclasses import dataclass

import gradio as gr

from convformer.config import FUSIONS

from .. import engine, references
from . import handlers
from ..i18n import tr
from ..tasks import page as task_page


@dataclass(frozen=True)
class ComparePage:
    """The tables and chart whose headers and titles follow the page's language (set on load)."""
    split_table: gr.Dataframe
    split_plot: gr.BarPlot
    ref_table: gr.Dataframe


def build() -> ComparePage:
    """Lay out the Compare tab (call it inside the tab) and wire its three buttons."""
    gr.Markdown(tr("compare.explain"))
    with gr.Row(equal_height=False):
        image = gr.Image(handlers.example_image() or None, type="filepath", label=tr("compare.image"), height=200,
                         sources=["upload", "clipboard"], elem_id="compare-image", scale=1,
                         image_mode=None)  # the file undecoded: only convformer.data.images decodes it
        with gr.Column(scale=3):
            run_btn = gr.Button(tr("compare.run"), variant="primary", elem_id="compare-run")
    outputs = []  # per stage: title, top classes, its overlay, its channels
    with gr.Row(equal_height=False):
        for f in FUSIONS:
            with gr.Column(min_width=180):
                outputs += [gr.Markdown(f"### {f}"), gr.Label(num_top_classes=3, label=tr("compare.top")),
                            gr.Image(label=tr(handlers.OVERLAY[f]), interactive=False, format="jpeg", height=180,
                                     elem_classes="cf-stage-picture"),
                            gr.Image(label=tr(handlers.CHANNELS[f]), interactive=False, format="jpeg", height=180,
                                     elem_classes="cf-stage-picture")]
    task_page.compare_section(image)  # detect and segment: the stages side by side (issue 23)
    gr.Markdown(tr("compare.split"))
    with gr.Row(equal_height=False):
        split_n = gr.Slider(10, 2000, 500, step=10, label=tr("compare.test_images"), scale=3)
        split_btn = gr.Button(tr("compare.score"), variant="primary", scale=1, elem_id="compare-split")
    split_note = gr.Markdown()
    with gr.Row(equal_height=False):
        split_table = gr.Dataframe(headers=handlers.HEADERS, interactive=False, elem_id="compare-table", scale=3)
        split_plot = gr.BarPlot(x="model", y="accuracy (%)", y_lim=[0, 100], sort=None, height=300, scale=2,
                                label=tr("compare.test_acc"), elem_id="compare-plot")
    gr.Markdown(tr("refs.explain"))
    ref_btn = gr.Button(tr("refs.run"), variant="primary", elem_id="compare-imagenet")
    ref_gallery = gr.Gallery(label=tr("refs.gallery"), columns=5, height=260, allow_preview=True, interactive=False,
                             elem_id="imagenet-gallery")
    ref_note = gr.Markdown(elem_id="imagenet-note")  # the weights cannot be had: said here, in one line
    ref_table = gr.Dataframe(headers=references.headers(), interactive=False, wrap=True, elem_id="imagenet-table")

    run_btn.click(engine.guard(handlers.compare_image), image, outputs, api_name="compare_image")
    split_btn.click(handlers.compare_split, split_n, [split_table, split_plot, split_note], api_name="compare_split")
    ref_btn.click(engine.handled(references.compare), image, [ref_table, ref_gallery, ref_note],
                  api_name="compare_imagenet")
    return ComparePage(split_table, split_plot, ref_table)
