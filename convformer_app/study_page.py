"""The Study tab's layout and events; its handlers live in study.py. app.py calls `build` inside the tab and
wires `committed` to the page's load and language change."""
from __future__ import annotations

from dataclasses import dataclass

import gradio as gr

from . import study
from .train import handlers as train_tab
from .i18n import tr


@dataclass(frozen=True)
class StudyPage:
    """What app.py wires: the committed results' Markdown and figure (they follow the page's language)."""
    committed: list


def build() -> StudyPage:
    gr.Markdown(tr("study.explain"))
    with gr.Accordion(tr("study.committed"), open=True):
        results = gr.Markdown(elem_id="study-results")
        plot = gr.Plot(label=tr("study.plot"), elem_id="study-plot")
    with gr.Accordion(tr("study.live"), open=True):
        gr.Markdown(tr("study.live_info"))
        with gr.Row():
            run_btn = gr.Button(tr("study.run"), variant="primary", elem_id="study-run")
            cancel_btn = gr.Button(tr("study.cancel"), variant="stop", elem_id="study-cancel")
        status = gr.Markdown(tr("study.press"), elem_id="study-status")
        live = gr.Markdown(elem_id="study-live")
        live_plot = gr.Plot(label=tr("study.live_plot"), elem_id="study-live-plot")
    outputs = [status, live, live_plot]
    run = run_btn.click(study.run_quick, None, outputs, api_name="study_quick", concurrency_limit=None,
                        show_progress_on=[status], time_limit=train_tab.limits().time_limit + 120)
    cancel_btn.click(study.cancel, None, status, cancels=[run], api_name="cancel_study").then(
        study.after_cancel, None, outputs, api_name="after_cancel_study")
    return StudyPage([results, plot])
