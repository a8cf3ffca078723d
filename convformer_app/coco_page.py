"""The "Photos: Pretrained on COCO" views in Explore, laid out in an accordion of their own (the Detect task's
layout, issue 23, can absorb them: every view is one handler of convformer_app/coco.py). `build(image)` is
called inside the Explore tab with its image input and wires the events; each event has an api_name."""
from __future__ import annotations

import gradio as gr

from convformer.coco_detr import THRESHOLD

from . import coco, engine  # coco registers its texts
from .i18n import tr


def build(image: gr.File) -> dict:
    """Lay out the accordion and wire it; returns its components by name (coco.OUTPUTS and the inputs)."""
    with gr.Accordion(tr("coco.box"), open=False, elem_id="coco"):
        gr.Markdown(tr("coco.explain"))
        with gr.Row():
            threshold = gr.Slider(0.05, 0.99, THRESHOLD, step=0.05, label=tr("coco.threshold"), elem_id="coco-threshold")
            run = gr.Button(tr("coco.run"), variant="primary", elem_id="coco-run")
        summary = gr.Markdown(elem_id="coco-summary")
        with gr.Row(equal_height=False):
            boxes = gr.Image(label=tr("coco.boxes"), interactive=False, format="jpeg", elem_id="coco-boxes", scale=3)
            table = gr.Dataframe(headers=coco.TABLE_HEADERS, interactive=False, label=tr("coco.table"),
                                 elem_id="coco-table", scale=2, max_height=400)
        with gr.Row():
            obj = gr.Dropdown([], label=tr("coco.object"), elem_id="coco-object", allow_custom_value=True)
            head = gr.Dropdown([(tr("coco.all_heads"), "mean"), *[(str(i + 1), str(i)) for i in range(8)]],
                               value="mean", label=tr("coco.head"), elem_id="coco-head")
            cam_btn = gr.Button(tr("coco.cam_btn"), size="sm", elem_id="coco-cam-run")
        with gr.Row(equal_height=False):
            query = gr.Image(label=tr("coco.query"), interactive=False, format="jpeg", elem_id="coco-query")
            cam = gr.Image(label=tr("coco.cam"), interactive=False, format="jpeg", elem_id="coco-cam")
        layers = gr.Gallery(label=tr("coco.layers"), columns=6, height=220, elem_id="coco-layers")
        with gr.Row(equal_height=False):
            with gr.Column():
                enc_layer = gr.Slider(1, 6, 6, step=1, label=tr("coco.enc_layer"), elem_id="coco-enc-layer")
                pixel = gr.Image(label=tr("coco.pixel"), interactive=False, format="jpeg", elem_id="coco-pixel")
                px, py = gr.Number(visible=False), gr.Number(visible=False)
            with gr.Column():
                stage = gr.Dropdown([], label=tr("coco.stage"), elem_id="coco-stage", allow_custom_value=True)
                channels = gr.Image(label=tr("coco.channels"), interactive=False, format="jpeg",
                                    elem_id="coco-channels")
        diagram = gr.HTML(label=tr("coco.diagram"), elem_id="coco-diagram-box")
        shapes = gr.Dataframe(headers=coco.SHAPE_HEADERS, interactive=False, wrap=True, label=tr("coco.shapes"),
                              elem_id="coco-shapes", max_height=2000)
        state = gr.State(None, time_to_live=3600)
    named = dict(summary=summary, boxes=boxes, table=table, object=obj, query=query, layers=layers, pixel=pixel,
                 stage=stage, channels=channels, shapes=shapes, diagram=diagram, state=state)
    outputs = [named[k] for k in coco.OUTPUTS]
    run.click(engine.guard(coco.detect), [image, threshold], outputs, api_name="coco_detect")
    gr.on([obj.input, head.input], engine.handled(coco.object_maps), [state, obj, head], [query, layers],
          api_name="coco_object")
    pixel.select(engine.handled(coco.click), [state, enc_layer], [px, py, pixel], api_name="coco_click")
    enc_layer.change(engine.handled(coco.pixel), [state, px, py, enc_layer], pixel, api_name="coco_pixel")
    stage.input(engine.handled(coco.channel_picture), [state, stage], channels, api_name="coco_channels")
    cam_btn.click(engine.guard(coco.cam), [state, obj], cam, api_name="coco_cam")
    return dict(named, threshold=threshold, head=head, enc_layer=enc_layer, px=px, py=py, cam=cam)
