"""The Explore tab's layout and events; its handlers live in handlers.py (and engine.py, views.py). app.py
calls `build` inside the tab and wires the returned texts into the ones that follow the page's language."""
from __future__ import annotations

from dataclasses import dataclass

import gradio as gr

from convformer.config import FUSIONS

from .. import absent, coco_page, engine, i18n, trust_page
from . import handlers
from ..tasks import page as task_page
from ..controls import ALL_PRESETS, KNOBS, RANGES, Controls, Knob
from ..i18n import tr
from ..weights import WEIGHTS, defaults, resolve

D = defaults("mid")
D_NOTICE = i18n.fixed(lambda: resolve(D).notice)  # the start page's notice, in each language


@dataclass(frozen=True)
class ExplorePage:
    """What the rest of the page wires to."""
    controls: list       # one component per field of Controls, in order: handlers take them as `*controls`
    set_controls: list   # handlers.CONTROL_OUTPUTS: what a change of stage, preset, weights or a trained run sets
    retold: list         # texts built in Python (handlers.retell): notice, config status, maps note, table, diagram
    gallery: gr.Gallery  # the examples (captions in the page's language)


def slider(name: str) -> gr.Slider:
    """A hyperparameter slider with the range of controls.RANGES (which a URL is clamped to)."""
    lo, hi, step = RANGES[name]
    return gr.Slider(lo, hi, getattr(D, name), step=step, label=tr(f"ctl.{name}"))


def component(knob: Knob) -> gr.components.Component:
    """A knob's control: a slider over its range, a text box for numbers separated by commas, else a radio."""
    if knob.range:
        return slider(knob.name)
    if knob.kind == "ints":
        return gr.Textbox(getattr(D, knob.name), label=tr(knob.label), elem_classes="cf-small")
    return gr.Radio(list(knob.choices), value=getattr(D, knob.name), label=tr(knob.label))


def knob_components() -> dict[str, gr.components.Component]:
    """Every knob's control, laid out in rows (knobs that share a `row` side by side), by name."""
    made: dict[str, gr.components.Component] = {}
    for knob in KNOBS:
        if knob.name in made:
            continue
        if knob.row is None:
            made[knob.name] = component(knob)
            continue
        with gr.Row():
            for k in (k for k in KNOBS if k.row == knob.row):
                made[k.name] = component(k)
    return made


def build(run_state: gr.State, point: gr.State, trained: gr.State) -> ExplorePage:
    """Lay out the Explore tab (call it inside the tab) and wire its events. `run_state`: the session's last run;
    `point`: a clicked patch; `trained`: the session's Train-tab checkpoint path."""
    c: dict = {"notice": gr.Markdown(D_NOTICE, elem_id="weights-notice")}
    # three columns on a laptop: the image | the controls, Run and the prediction under it | the examples; on a
    # phone they stack in that order, so Run and the prediction come before the examples (page.css)
    with gr.Row(equal_height=False, elem_id="cf-first-row"):
        c.update(image_column())
        c.update(controls_column())
        c.update(examples_column())
    c["task_panels"] = task_page.panels()
    c["maps_note"] = gr.Markdown()
    with gr.Tabs(overflow_behavior="wrap"):  # on a phone every picture stays one tap away
        for tab in (rollout_tab, per_block_tab, channels_tab, cam_tab, relevance_tab, shapes_tab, code_tab):
            c.update(tab())
    coco_page.build(c["image"])  # Photos: Pretrained on COCO (DETR), on the same image
    c["address"] = gr.Textbox(visible=False)  # the query string of the controls, for the address bar

    # the Explore controls, one component per field of Controls: handlers take them as `*controls` (spread)
    parts = dict(fusion=c["fusion"], preset=c["preset"], **c["knobs"], weights=c["weights"],
                 checkpoint=c["checkpoint"])
    controls = [parts[k] for k in Controls.names()]
    trust_page.build(c["image"], controls, trained, c["resize"])  # Which map to trust? (an accordion under the maps)
    named = dict(parts, **{k: c[k] for k in NAMED}, run=run_state, point=point)
    set_controls = [named[k] for k in handlers.CONTROL_OUTPUTS]
    wire_run(c, controls, named, trained)
    wire_controls(c, controls, set_controls, trained)
    wire_maps(c, run_state, point)
    task_page.wire(c["task"], c["run_btn"], c["task_buttons"], c["task_scene"], c["task_panels"], c["task_cams"],
                   dict(named, image=c["image"], top_k=c["top_k"], hparams=c["hparams"],
                        config_status=c["config_status"]), c["resize"], trained)
    wire_link(c, controls)
    return ExplorePage(controls, set_controls, [c[k] for k in ("notice", "config_status", "maps_note", "table",
                                                               "diagram")], gallery=c["gallery"])


# the components the handlers name (besides the controls, the run and the point): handlers.PREDICT_OUTPUTS,
# CONTROL_OUTPUTS and the tasks' wiring read them by these names
NAMED = ("label", "notice", "stats", "maps_note", "rollout", "patch", "query", "blocks", "heads", "channels", "cam",
         "table", "diagram", "block", "head", "stage", "cam_target", "cam_layer", "cam_note", "caution", "relevance",
         "relevance_note")


def image_column() -> dict:
    """The first column: the picture (drop zone, webcam, clipboard), its status and the task's scene controls."""
    with gr.Column(scale=1, min_width=260):
        # the image area is the drop zone (and the webcam and the clipboard); the file it holds is `image`,
        # which /predict reads. Gradio passes the file on undecoded (filepath, image_mode=None):
        # load_image decodes it, with the app's limits
        preview = gr.Image(handlers.preview(handlers.first_example())[0], label=tr("image.drop"),
                           sources=["upload", "webcam", "clipboard"], type="filepath", image_mode=None,
                           format="jpeg", height=240, elem_id="preview")
        image = gr.File(handlers.first_example(), label=tr("image.file"), file_types=["image"],
                        type="filepath", elem_id="image-file", visible="hidden")
        gr.Markdown(tr("image.drop_info"), elem_classes="cf-hint")
        image_status = gr.Markdown(elem_id="image-status")
        task_scene = task_page.scene_controls()
    return dict(preview=preview, image=image, image_status=image_status, task_scene=task_scene)


def model_controls() -> dict:
    """The task, the fusion stage, the preset and the weights (with the checkpoint upload) and their status."""
    task = task_page.choice()
    fusion = gr.Radio(i18n.choices({f: f"fusion.{f}" for f in FUSIONS}), value=D.fusion,
                      label=tr("ctl.fusion"), elem_id="fusion", info=tr("ctl.fusion_info"))
    with gr.Row():
        preset = gr.Dropdown(list(ALL_PRESETS), value=D.preset, allow_custom_value=True, label=tr("ctl.preset"),
                             info=tr("ctl.preset_info"), min_width=200, elem_id="preset")
        weights = gr.Dropdown(i18n.choices({k: f"weights.{k}" for k in WEIGHTS}), value=D.weights,
                              label=tr("ctl.weights"), min_width=200)
    checkpoint = gr.File(label=tr("ctl.checkpoint"), file_types=[".safetensors"],
                         type="filepath", visible=False, height=100)
    config_status = gr.Markdown(elem_id="config-status")
    return dict(task=task, fusion=fusion, preset=preset, weights=weights, checkpoint=checkpoint,
                config_status=config_status)


def controls_column() -> dict:
    """The middle column: the model's controls, Run (and the task's buttons), the link, the prediction, the
    hyperparameters."""
    with gr.Column(scale=2, min_width=340, elem_id="cf-controls"):
        made = model_controls()
        with gr.Row():
            run_btn = gr.Button(tr("ctl.run"), variant="primary", elem_id="run", scale=2)
            task_buttons = task_page.buttons()
            link_btn = gr.Button(tr("ctl.link"), size="sm", scale=1, elem_id="link")
        link_box = gr.Textbox(label=tr("ctl.link_box"), interactive=False, visible=False, buttons=["copy"],
                              elem_id="link-box")
        label = gr.Label(num_top_classes=10, label=tr("ctl.prediction"), elem_id="label")
        caution = gr.Markdown(elem_id="caution")  # Shapes weights on an image unlike Shapes
        stats = gr.Markdown(elem_id="stats")
        top_k = gr.Slider(1, 10, 5, step=1, label=tr("ctl.top_k"))
        with gr.Accordion(tr("ctl.hparams"), open=False) as hparams:
            knobs = knob_components()  # controls.KNOBS
    return dict(made, run_btn=run_btn, task_buttons=task_buttons, link_btn=link_btn, link_box=link_box, label=label,
                caution=caution, stats=stats, top_k=top_k, hparams=hparams, knobs=knobs)


def examples_column() -> dict:
    """The third column: the examples and how a picture is resized."""
    with gr.Column(scale=1, min_width=260, elem_id="cf-examples-col"):
        gr.Markdown(tr("image.examples"), elem_id="examples-title")  # a title above, not over, the first row
        gallery = gr.Gallery(handlers.gallery(), label=tr("image.examples"), show_label=False, columns=4,
                             height="auto", allow_preview=False, interactive=False, object_fit="cover",
                             elem_id="examples")
        resize = gr.Radio(i18n.choices({"keep": "resize.keep", "squash": "resize.squash"}), value="keep",
                          label=tr("image.resize"), elem_id="resize", info=tr("image.resize_info"))
    return dict(gallery=gallery, resize=resize)


def rollout_tab() -> dict:
    with gr.Tab(tr("tab.rollout")):
        gr.Markdown(tr("rollout.explain"))
        with gr.Row():
            rollout = gr.Image(label=tr("rollout.image"), interactive=False, format="jpeg",
                               elem_id="rollout")
            with gr.Column():
                head_fusion = gr.Radio(i18n.choices({h: f"head_fusion.{h}" for h in handlers.HEAD_FUSIONS}),
                                       value="mean", label=tr("rollout.head_fusion"))
                discard = gr.Slider(0, 0.95, 0.0, step=0.05, elem_id="discard", label=tr("rollout.discard"))
    return dict(rollout=rollout, head_fusion=head_fusion, discard=discard)


def per_block_tab() -> dict:
    with gr.Tab(tr("tab.per_block")):
        gr.Markdown(tr("per_block.explain"))
        with gr.Row():
            block = gr.Dropdown([], label=tr("per_block.block"), allow_custom_value=True)
            head = gr.Dropdown([(tr("per_block.mean"), "mean of heads")], value="mean of heads",
                               label=tr("per_block.head"), allow_custom_value=True)
        with gr.Row():
            patch = gr.Image(label=tr("per_block.patch"), interactive=False, format="jpeg", elem_id="patch")
            query = gr.Image(label=tr("per_block.query"), interactive=False, format="jpeg", elem_id="query")
        with gr.Row():
            blocks = gr.Image(label=tr("per_block.blocks"), interactive=False, format="jpeg")
            heads = gr.Image(label=tr("per_block.heads"), interactive=False, format="jpeg")
    return dict(block=block, head=head, patch=patch, query=query, blocks=blocks, heads=heads)


def channels_tab() -> dict:
    with gr.Tab(tr("tab.channels")):
        gr.Markdown(tr("channels.explain"))
        stage = gr.Dropdown([], label=tr("channels.stage"), allow_custom_value=True)
        channels = gr.Image(label=tr("channels.image"), interactive=False, format="jpeg",
                            elem_id="channels")
    return dict(stage=stage, channels=channels)


def cam_tab() -> dict:
    with gr.Tab(tr("tab.cam")):
        gr.Markdown(tr("cam.explain"))
        cam_target = gr.Dropdown([(tr("cam.predicted"), engine.PREDICTED)], value=engine.PREDICTED,
                                 label=tr("cam.target"),
                                 allow_custom_value=True)
        cam_layer = gr.Dropdown([], value="", label=tr("cam.layer"), allow_custom_value=True,
                                elem_id="cam-layer")
        task_cams = task_page.cam_controls()
        cam_note = gr.Markdown(elem_id="cam-note")
        cam = gr.Image(label=tr("cam.image"), interactive=False, format="jpeg", elem_id="cam")
    return dict(cam_target=cam_target, cam_layer=cam_layer, task_cams=task_cams, cam_note=cam_note, cam=cam)


def relevance_tab() -> dict:
    with gr.Tab(tr("tab.relevance")):
        gr.Markdown(tr("relevance.explain"))
        relevance_note = gr.Markdown(elem_id="relevance-note")
        relevance = gr.Image(label=tr("relevance.image"), interactive=False, format="jpeg", elem_id="relevance")
    return dict(relevance_note=relevance_note, relevance=relevance)


def shapes_tab() -> dict:
    with gr.Tab(tr("tab.shapes")):
        gr.Markdown(tr("shapes.explain"))
        diagram = gr.HTML(elem_id="diagram")
        table = gr.Dataframe(headers=["step", "input", "output", "params", "FLOPs", "what"],
                             interactive=False, wrap=True, elem_id="shape-table", max_height=2000)
    return dict(diagram=diagram, table=table)


def code_tab() -> dict:
    with gr.Tab(tr("tab.code")) as tab:
        gr.Markdown(tr("code.explain"))
        code_btn = gr.Button(tr("code.write"), size="sm", elem_id="code-run")
        code_view = gr.Code(language="python", interactive=False, lines=20, max_lines=40,
                            buttons=["copy", "download"], elem_id="code")
        code_file = gr.File(label=tr("code.file"), interactive=False, elem_id="code-file",
                            height=80)
    return dict(code_tab=tab, code_btn=code_btn, code_view=code_view, code_file=code_file)


SHOW_PREDICTION = """() => { const e = document.querySelector('#label'); if (!e) return;
    const r = e.getBoundingClientRect();
    if (r.top < 0 || r.top + 80 > window.innerHeight) e.scrollIntoView({block: 'center', behavior: 'instant'}); }"""


def wire_run(c: dict, controls: list, named: dict, trained: gr.State) -> None:
    """Run, a new CAM target or layer, a new picture, and the Code tab."""
    predict_inputs = [c["image"], *controls, c["cam_target"], c["top_k"], c["head_fusion"], c["discard"],
                      c["cam_layer"], trained, c["resize"]]
    predict_outputs = [named[k] for k in handlers.PREDICT_OUTPUTS]
    c["run_btn"].click(engine.guard(handlers.predict), predict_inputs, predict_outputs, api_name="predict").failure(
        handlers.cleared, None, predict_outputs, api_visibility="private")  # no old results under the error
    c["run_btn"].click(None, js=SHOW_PREDICTION)  # in the browser only: the answer comes where the eye is
    gr.on([c["cam_target"].input, c["cam_layer"].input], engine.guard(handlers.predict), predict_inputs,
          predict_outputs, api_name="explain")
    c["image"].change(handlers.preview, c["image"], [c["preview"], c["image_status"]], api_name="preview")
    gr.on([c["code_tab"].select, c["code_btn"].click], engine.guard(handlers.code), [*controls, trained],
          [c["code_view"], c["code_file"]], api_name="code")
    # dropped, picked, pasted or captured: `upload` fires on the user's picture only. (`input` also fired when
    # `preview` showed the enlarged copy, which then replaced the user's file: boxes in the copy's pixels.)
    c["preview"].upload(lambda path: path, c["preview"], c["image"], api_name="capture")
    c["gallery"].select(handlers.pick_example, None, c["image"], api_name="example")


def wire_controls(c: dict, controls: list, set_controls: list, trained: gr.State) -> None:
    """A new stage, preset, weights or checkpoint sets the controls; any change is checked and goes to the
    address bar."""
    c["fusion"].input(handlers.on_fusion, [*controls, trained], set_controls, api_name="fusion_defaults")
    c["preset"].input(handlers.on_preset, [*controls, trained], set_controls, api_name="preset_defaults")
    c["weights"].input(handlers.on_weights, [*controls, trained], set_controls, api_name="weights_defaults")
    c["weights"].change(lambda w: gr.update(visible=w == "upload"), c["weights"], c["checkpoint"],
                        api_visibility="private")
    c["checkpoint"].change(handlers.on_weights, [*controls, trained], set_controls, api_name="checkpoint_notice")
    gr.on([x.change for x in controls], handlers.check_config, [*controls, trained], c["config_status"],
          api_name="check_config", show_progress="hidden")  # the status line, not a timer, while it is checked
    gr.on([x.change for x in controls], handlers.link, controls, c["address"], api_name="address",
          api_visibility="private", queue=False,
          show_progress="hidden").then(None, c["address"], None, api_visibility="private",  # the address bar follows
                                       js="(q) => { if (q) history.replaceState(null, '', location.pathname + q); }")


def wire_maps(c: dict, run_state: gr.State, point: gr.State) -> None:
    """Redrawing the attention maps and the channels from the last run, without running again."""
    attention_outputs = [c[k] for k in ("rollout", "patch", "query", "blocks", "heads")]
    redraw = [run_state, c["head_fusion"], c["discard"], c["block"], c["head"], point]
    # discard: change (dragged, or typed + Enter)
    gr.on([c["head_fusion"].input, c["discard"].change, c["block"].input, c["head"].input],
          engine.handled(handlers.redraw_attention), redraw, attention_outputs, api_name="attention",
          trigger_mode="always_last")
    c["patch"].select(engine.handled(handlers.click), [run_state, c["block"], c["head"]],
                      [point, c["patch"], c["query"]], api_name="click")
    c["stage"].input(engine.handled(handlers.redraw_channels), [run_state, c["stage"]], c["channels"],
                     api_name="channels")
    run_state.change(absent.labels, run_state, [c[k] for k in ("rollout", "patch", "query", "blocks", "heads",
                                                                "channels", "cam")],  # why a map is empty
                     api_visibility="private", queue=False, show_progress="hidden")


def wire_link(c: dict, controls: list) -> None:
    """Link: the address of these controls, copied to the clipboard and shown."""
    c["link_btn"].click(handlers.link, controls, c["link_box"], api_name="link").then(
        None, c["link_box"], c["link_box"], js="(q) => { const url = window.location.origin + "
        "window.location.pathname + q; navigator.clipboard?.writeText(url).catch(() => {}); return url; }",
        api_name="copy_link").then(lambda: gr.update(visible=True), None, c["link_box"], api_name="show_link")
