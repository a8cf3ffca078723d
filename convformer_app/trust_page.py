"""Explore's "Which map to trust?" accordion: its layout and events (the handlers are in trust.py)."""
from __future__ import annotations

import gradio as gr

from . import engine, trust
from .i18n import tr


def build(image: gr.File, controls: list, trained: gr.State, resize: gr.Radio) -> None:
    """Lay out the accordion (inside Explore, under the maps) and wire its two buttons to the image and
    controls in view: `trust` scores every map on the image, `sanity` runs the sanity check."""
    with gr.Accordion(tr("trust.title"), open=False, elem_id="trust"):
        gr.Markdown(tr("trust.explain"))
        with gr.Row():
            run = gr.Button(tr("trust.run"), variant="primary", size="sm", elem_id="trust-run")
            check = gr.Button(tr("trust.sanity_run"), size="sm", elem_id="trust-sanity")
        verdict = gr.Markdown(elem_id="trust-verdict")
        gr.Markdown(tr("trust.legend"))  # Gradio 6.31 clips the plots' own legend (under the x axis)
        with gr.Row():
            deletion = gr.LinePlot(x="fraction", y="probability", color="method", color_map=trust.COLOURS,
                                   y_lim=[0, 1], height=300, color_title="", label=tr("trust.deletion_plot"),
                                   elem_id="trust-deletion")
            insertion = gr.LinePlot(x="fraction", y="probability", color="method", color_map=trust.COLOURS,
                                    y_lim=[0, 1], height=300, color_title="", label=tr("trust.insertion_plot"),
                                    elem_id="trust-insertion")
        table = gr.Dataframe(interactive=False, wrap=True, label=tr("trust.table"), elem_id="trust-table")
        branches = gr.Markdown(elem_id="trust-branches")
        sanity = gr.Dataframe(interactive=False, wrap=True, label=tr("trust.sanity_table"),
                              elem_id="trust-sanity-table")
    inputs = [image, *controls, trained, resize]
    run.click(engine.guard(trust.score), inputs, [deletion, insertion, table, verdict, branches], api_name="trust")
    check.click(engine.guard(trust.sanity), inputs, sanity, api_name="sanity")
