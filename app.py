"""ConvFormer Lab: build a conv + transformer hybrid, run it on an image, and see what it predicts, where it
attends, what its convolutions respond to and the shape of the data at every step.

Layout and wiring only; the handlers live in the package convformer_app/ (controls, weights, session, views,
one module per tab). Run: python app.py [--host --port --share --device]
"""
from __future__ import annotations

import argparse
import os
from pathlib import Path

# Headless: a server draws no windows. Gradio asks matplotlib for its backend on every event; left unset,
# the first event of the process imports pyplot to find out (0.4 s, on the server's event loop).
os.environ.setdefault("MPLBACKEND", "agg")
# Gradio rebuilds its monitoring summary (a pandas table of up to 10,000 past events) after EVERY event by
# default, so each request costs more the longer the server runs; refresh it every 100 events instead.
os.environ.setdefault("GRADIO_ANALYTICS_CACHE_FREQUENCY", "100")

import gradio as gr  # noqa: E402

try:  # Hugging Face ZeroGPU: `spaces` must be imported before torch touches CUDA
    import spaces  # noqa: F401
except ImportError:
    pass

from convformer.config import FUSIONS, MERGES  # noqa: E402
from convformer_app import compare, compare_page, explore, imagenet, i18n, session, train_page, train_tab  # noqa: E402
from convformer_app import safety  # noqa: E402
from convformer_app.controls import ALL_PRESETS, RANGES, Controls  # noqa: E402
from convformer_app.i18n import tr  # noqa: E402
from convformer_app.weights import WEIGHTS, defaults, resolve  # noqa: E402

D = defaults("mid")
D_NOTICE = i18n.fixed(lambda: resolve(D).notice)  # the start page's notice, in each language
CSS = (Path(__file__).parent / "convformer_app" / "page.css").read_text()


def slider(name: str) -> gr.Slider:
    """A hyperparameter slider with the range of controls.RANGES (which a URL is clamped to)."""
    lo, hi, step = RANGES[name]
    return gr.Slider(lo, hi, getattr(D, name), step=step, label=tr(f"ctl.{name}"))


with gr.Blocks(title="ConvFormer Lab", delete_cache=(3600, 3600)) as demo:
    gr.Markdown(tr("app.intro"))
    run_state, point = gr.State(None, time_to_live=3600), gr.State(None)  # the last run; a clicked patch
    trained = gr.State(None, delete_callback=train_tab.forget)  # this session's Train-tab checkpoint path
    with gr.Tabs(elem_id="pages"):
        with gr.Tab(tr("tab.explore"), id="explore"):
            notice = gr.Markdown(D_NOTICE, elem_id="weights-notice")
            with gr.Row(equal_height=False):
                with gr.Column(scale=1, min_width=260):
                    image = gr.File(explore.first_example(), label=tr("image.file"), file_types=["image"],
                                    type="filepath", elem_id="image-file", height=100)
                    with gr.Accordion(tr("image.capture_box"), open=False):
                        capture = gr.Image(sources=["webcam", "clipboard"], type="filepath", label=tr("image.capture"),
                                           image_mode=None)  # Gradio passes the file on undecoded: load_image decodes
                    preview = gr.Image(explore.preview(explore.first_example())[0], label=tr("image.preview"), interactive=False, format="jpeg", height=220, elem_id="preview")
                    image_status = gr.Markdown()
                    resize = gr.Radio(i18n.choices({"keep": "resize.keep", "squash": "resize.squash"}), value="keep",
                                      label=tr("image.resize"), elem_id="resize", info=tr("image.resize_info"))
                with gr.Column(scale=1, min_width=260):
                    gallery = gr.Gallery(explore.gallery(), label=tr("image.examples"), columns=3,
                                         height=330,
                                         allow_preview=False, interactive=False, object_fit="cover", elem_id="examples")
                with gr.Column(scale=2, min_width=380):
                    fusion = gr.Radio(i18n.choices({f: f"fusion.{f}" for f in FUSIONS}), value=D.fusion,
                                      label=tr("ctl.fusion"), elem_id="fusion", info=tr("ctl.fusion_info"))
                    with gr.Row():
                        preset = gr.Dropdown(list(ALL_PRESETS), value=D.preset, allow_custom_value=True, label=tr("ctl.preset"),
                                             info=tr("ctl.preset_info"))
                        weights = gr.Dropdown(i18n.choices({k: f"weights.{k}" for k in WEIGHTS}), value=D.weights,
                                              label=tr("ctl.weights"))
                    checkpoint = gr.File(label=tr("ctl.checkpoint"), file_types=[".safetensors"],
                                         type="filepath", visible=False, height=100)
                    with gr.Accordion(tr("ctl.hparams"), open=False):
                        with gr.Row():
                            img_size = slider("img_size")
                            patch_size = slider("patch_size")
                        with gr.Row():
                            embed_dim = slider("embed_dim")
                            depth = slider("depth")
                        with gr.Row():
                            num_heads = slider("num_heads")
                            mlp_ratio = slider("mlp_ratio")
                        with gr.Row():
                            conv_widths = gr.Textbox(D.conv_widths, label=tr("ctl.conv_widths"),
                                                     elem_classes="cf-small")
                            conv_depths = gr.Textbox(D.conv_depths, label=tr("ctl.conv_depths"),
                                                     elem_classes="cf-small")
                        merge = gr.Radio(list(MERGES), value=D.merge, label=tr("ctl.merge"))
                    config_status = gr.Markdown(elem_id="config-status")
                    top_k = gr.Slider(1, 10, 5, step=1, label=tr("ctl.top_k"))
                    with gr.Row():
                        run_btn = gr.Button(tr("ctl.run"), variant="primary", elem_id="run", scale=2)
                        link_btn = gr.Button(tr("ctl.link"), size="sm", scale=1, elem_id="link")
                    link_box = gr.Textbox(label=tr("ctl.link_box"), interactive=False, visible=False, buttons=["copy"],
                                          elem_id="link-box")
            with gr.Row(equal_height=False):
                label = gr.Label(num_top_classes=10, label=tr("ctl.prediction"), elem_id="label", scale=1)
                with gr.Column(scale=2):
                    caution = gr.Markdown(elem_id="caution")  # Shapes weights on an image unlike Shapes
                    stats = gr.Markdown(elem_id="stats")
                    maps_note = gr.Markdown()
            with gr.Tabs(overflow_behavior="wrap"):  # on a phone every picture stays one tap away
                with gr.Tab(tr("tab.rollout")):
                    gr.Markdown(tr("rollout.explain"))
                    with gr.Row():
                        rollout = gr.Image(label=tr("rollout.image"), interactive=False, format="jpeg",
                                           elem_id="rollout")
                        with gr.Column():
                            head_fusion = gr.Radio(i18n.choices({h: f"head_fusion.{h}" for h in explore.HEAD_FUSIONS}), value="mean",
                                                   label=tr("rollout.head_fusion"))
                            discard = gr.Slider(0, 0.95, 0.0, step=0.05, elem_id="discard", label=tr("rollout.discard"))
                with gr.Tab(tr("tab.per_block")):
                    gr.Markdown(tr("per_block.explain"))
                    with gr.Row():
                        block = gr.Dropdown([], label=tr("per_block.block"), allow_custom_value=True)
                        head = gr.Dropdown([(tr("per_block.mean"), "mean of heads")], value="mean of heads", label=tr("per_block.head"),
                                           allow_custom_value=True)
                    with gr.Row():
                        patch = gr.Image(label=tr("per_block.patch"), interactive=False, format="jpeg", elem_id="patch")
                        query = gr.Image(label=tr("per_block.query"), interactive=False, format="jpeg", elem_id="query")
                    with gr.Row():
                        blocks = gr.Image(label=tr("per_block.blocks"), interactive=False, format="jpeg")
                        heads = gr.Image(label=tr("per_block.heads"), interactive=False, format="jpeg")
                with gr.Tab(tr("tab.channels")):
                    gr.Markdown(tr("channels.explain"))
                    stage = gr.Dropdown([], label=tr("channels.stage"), allow_custom_value=True)
                    channels = gr.Image(label=tr("channels.image"), interactive=False, format="jpeg",
                                        elem_id="channels")
                with gr.Tab(tr("tab.cam")):
                    gr.Markdown(tr("cam.explain"))
                    cam_target = gr.Dropdown([(tr("cam.predicted"), session.PREDICTED)], value=session.PREDICTED,
                                             label=tr("cam.target"),
                                             allow_custom_value=True)
                    cam_layer = gr.Dropdown([], value="", label=tr("cam.layer"), allow_custom_value=True,
                                            elem_id="cam-layer")
                    cam_note = gr.Markdown(elem_id="cam-note")
                    cam = gr.Image(label=tr("cam.image"), interactive=False, format="jpeg", elem_id="cam")
                with gr.Tab(tr("tab.shapes")):
                    gr.Markdown(tr("shapes.explain"))
                    diagram = gr.HTML(elem_id="diagram")
                    table = gr.Dataframe(headers=["step", "input", "output", "params", "FLOPs", "what"],
                                         interactive=False, wrap=True, elem_id="shape-table", max_height=2000)
                with gr.Tab(tr("tab.code")) as code_tab:
                    gr.Markdown(tr("code.explain"))
                    code_btn = gr.Button(tr("code.write"), size="sm", elem_id="code-run")
                    code_view = gr.Code(language="python", interactive=False, lines=20, max_lines=40,
                                        buttons=["copy", "download"], elem_id="code")
                    code_file = gr.File(label=tr("code.file"), interactive=False, elem_id="code-file",
                                        height=80)
        # the Explore controls, one component per field of Controls: handlers take them as `*controls` (spread)
        parts = dict(fusion=fusion, preset=preset, img_size=img_size, embed_dim=embed_dim, depth=depth,
                     num_heads=num_heads, mlp_ratio=mlp_ratio, patch_size=patch_size, conv_widths=conv_widths,
                     conv_depths=conv_depths, merge=merge, weights=weights, checkpoint=checkpoint)
        controls = [parts[k] for k in Controls.names()]
        named = dict(parts, label=label, notice=notice, stats=stats, maps_note=maps_note, rollout=rollout,
                     patch=patch, query=query, blocks=blocks, heads=heads, channels=channels, cam=cam, table=table,
                     diagram=diagram, run=run_state, point=point, block=block, head=head, stage=stage,
                     cam_target=cam_target, cam_layer=cam_layer, cam_note=cam_note, caution=caution)
        set_controls = [named[k] for k in explore.CONTROL_OUTPUTS]
        with gr.Tab(tr("tab.train"), id="train"):
            train = train_page.build(controls, trained, set_controls)
        with gr.Tab(tr("tab.compare"), id="compare"):
            comparison = compare_page.build()

    relang = gr.Button("", elem_id="cf-relang")  # hidden; i18n.HEAD clicks it when the page's language changes
    address = gr.Textbox(visible=False)  # the query string of the controls, for the address bar

    # Explore's events (the Train and Compare tabs wired theirs in their build())
    predict_inputs = [image, *controls, cam_target, top_k, head_fusion, discard, cam_layer, trained, resize]
    predict_outputs = [named[k] for k in explore.PREDICT_OUTPUTS]
    attention_outputs = [rollout, patch, query, blocks, heads]

    run_btn.click(session.guard(explore.predict), predict_inputs, predict_outputs, api_name="predict").failure(
        explore.cleared, None, predict_outputs, api_visibility="private")  # no old results under the error
    gr.on([cam_target.input, cam_layer.input], session.guard(explore.predict), predict_inputs, predict_outputs,
          api_name="explain")
    image.change(explore.preview, image, [preview, image_status], api_name="preview")
    gr.on([code_tab.select, code_btn.click], session.guard(explore.code), [*controls, trained], [code_view, code_file],
          api_name="code")
    capture.input(lambda path: path, capture, image, api_name="capture")
    gallery.select(explore.pick_example, None, image, api_name="example")
    fusion.input(explore.on_fusion, [*controls, trained], set_controls, api_name="fusion_defaults")
    preset.input(explore.on_preset, [*controls, trained], set_controls, api_name="preset_defaults")
    weights.input(explore.on_weights, [*controls, trained], set_controls, api_name="weights_defaults")
    weights.change(lambda w: gr.update(visible=w == "upload"), weights, checkpoint, api_visibility="private")
    checkpoint.change(explore.on_weights, [*controls, trained], set_controls, api_name="checkpoint_notice")
    gr.on([c.change for c in controls], explore.check_config, [*controls, trained], config_status,
          api_name="check_config")
    gr.on([c.change for c in controls], explore.link, controls, address, api_name="address",
          api_visibility="private", queue=False,
          show_progress="hidden").then(None, address, None, api_visibility="private",  # the address bar follows
                                       js="(q) => { if (q) history.replaceState(null, '', location.pathname + q); }")
    redraw = [run_state, head_fusion, discard, block, head, point]
    gr.on([head_fusion.input, discard.change, block.input, head.input],  # change: dragged, or typed + Enter
          session.handled(explore.redraw_attention), redraw, attention_outputs, api_name="attention",
          trigger_mode="always_last")
    patch.select(session.handled(explore.click), [run_state, block, head], [point, patch, query], api_name="click")
    stage.input(session.handled(explore.redraw_channels), [run_state, stage], channels, api_name="channels")
    link_btn.click(explore.link, controls, link_box, api_name="link").then(
        None, link_box, link_box, js="(q) => { const url = window.location.origin + window.location.pathname + q;"
        " navigator.clipboard?.writeText(url).catch(() => {}); return url; }", api_name="copy_link").then(
        lambda: gr.update(visible=True), None, link_box, api_name="show_link")

    # texts built in Python follow the page's language: on load, and again when it is changed in Settings
    retold = [notice, config_status, maps_note, table, diagram]
    demo.load(explore.on_load, None, set_controls, api_name="load_config").then(
        explore.retell, [*controls, trained, run_state], retold, api_name=False)
    relang.click(explore.retell, [*controls, trained, run_state], retold, api_name=False)
    gr.on([demo.load, relang.click], train_tab.describe, train.described, train.model, api_name=False)
    gr.on([demo.load, relang.click], train_tab.axes, None, train.plots, api_name=False)
    demo.load(compare.headers, None, [comparison.split_table, comparison.split_plot], api_name=False)
    demo.load(imagenet.empty_table, None, comparison.ref_table, api_name=False)
    demo.load(explore.gallery, None, gallery, api_name=False)  # the captions in the page's language
    demo.unload(train_tab.leave)  # a closed page stops its training run
    i18n.localize(demo)  # every handler answers in the language of the page that called it


def main() -> None:
    parser = argparse.ArgumentParser(description="ConvFormer Lab: the Gradio app")
    parser.add_argument("--host", default=os.environ.get("GRADIO_SERVER_NAME", "127.0.0.1"),
                        help="address to listen on (default 127.0.0.1; 0.0.0.0 to serve the network)")
    parser.add_argument("--port", type=int, default=int(os.environ.get("GRADIO_SERVER_PORT", "7860")),
                        help="port (default 7860, or $GRADIO_SERVER_PORT)")
    parser.add_argument("--share", action="store_true", help="also open a public Gradio share link")
    parser.add_argument("--device", help="cpu, cuda, cuda:1, mps (default: the best available)")
    args = parser.parse_args()
    try:
        launch(args.host, args.port, share=args.share, device=args.device)
    except ValueError as e:  # an unknown device
        parser.error(str(e))


def launch(host: str = "127.0.0.1", port: int | None = None, share: bool = False, device: str | None = None,
           **extra) -> None:
    """Start the app: pick the device, start loading the default model, serve. `extra` goes to
    demo.launch (the tests pass prevent_thread_lock=True to serve from their own process)."""
    print(f"ConvFormer Lab on {session.start(device)}")
    safety.install_messages()  # every refusal: the app's own one-line message
    safety.bound_heap()  # freed memory goes back to the system: peaks do not pile up across sessions
    train_tab.clean_start()  # runs of an earlier process: their sessions are gone
    safety.start_janitor(Path(gr.utils.get_upload_folder()), [train_tab.prune])  # partial uploads, old runs
    explore.warm_up()  # the default model loads while the server starts
    demo.queue(default_concurrency_limit=2, max_size=32)
    demo.launch(server_name=host, server_port=port, share=share, show_error=False,
                allowed_paths=[str(session.EXAMPLES)], max_file_size="25mb", footer_links=["api", "settings"],
                theme=gr.themes.Soft(), css=CSS, i18n=i18n.I18N, head=i18n.HEAD, **extra)  # Settings: the language


if __name__ == "__main__":
    main()
