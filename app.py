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
from convformer_app import compare, explore, imagenet, i18n, session, train_tab  # noqa: E402
from convformer_app import safety  # noqa: E402
from convformer_app.controls import ALL_PRESETS, RANGES, Controls  # noqa: E402
from convformer_app.i18n import tr  # noqa: E402
from convformer_app.weights import WEIGHTS, defaults, resolve  # noqa: E402

D = defaults("mid")
D_NOTICE = i18n.fixed(lambda: resolve(D).notice)  # the start page's notice, in each language
LIM = train_tab.limits()
CSS = (Path(__file__).parent / "convformer_app" / "page.css").read_text()


def slider(name: str) -> gr.Slider:
    """A hyperparameter slider with the range of controls.RANGES (which a URL is clamped to)."""
    lo, hi, step = RANGES[name]
    return gr.Slider(lo, hi, getattr(D, name), step=step, label=tr(f"ctl.{name}"))


with gr.Blocks(title="ConvFormer Lab", delete_cache=(3600, 3600)) as demo:
    gr.Markdown(tr("app.intro"))
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
        with gr.Tab(tr("tab.train"), id="train"):
            gr.Markdown(tr("train.explain"))
            with gr.Row(equal_height=False):
                with gr.Column(scale=1, min_width=300):
                    train_arch = gr.Radio(i18n.choices({**{f: f"fusion.{f}" for f in train_tab.TYPICAL},
                                                        "explore": "train.arch_explore"}),
                                          value=train_tab.recipes.DEFAULT, label=tr("train.arch"),
                                          info=tr("train.arch_info"), elem_id="train-arch")
                    train_model = gr.Markdown(elem_id="train-model")
                    dataset = gr.Radio(i18n.choices({k: f"dataset.{k}" for k in train_tab.DATASETS}), value="shapes",
                                       label=tr("train.dataset"))
                    data_zip = gr.File(label=tr("train.zip"),
                                       file_types=[".zip"], type="filepath", visible=False, height=100)
                    train_images = gr.Slider(100, LIM.max_images, min(train_tab.R.train_size, LIM.max_images), step=100,
                                             label=tr("train.images"), info=tr("train.images_info"))
                    train_img = gr.Slider(32, LIM.max_img_size, min(train_tab.R.img_size, LIM.max_img_size), step=8,
                                          label=tr("train.img_size"), info=tr("train.img_size_info"))
                    with gr.Row():
                        epochs = gr.Slider(1, LIM.max_epochs, min(train_tab.R.epochs, LIM.max_epochs), step=1,
                                           label=tr("train.epochs"))
                        batch_size = gr.Slider(8, 256, train_tab.R.batch_size, step=8, label=tr("train.batch_size"))
                    lr = gr.Number(train_tab.R.lr, label=tr("train.lr"), minimum=1e-6, maximum=1)
                    gr.Markdown(i18n.fixed(train_tab.limits_text))
                    with gr.Row():
                        train_btn = gr.Button(tr("train.train"), variant="primary", elem_id="train")
                        cancel_btn = gr.Button(tr("train.cancel"), variant="stop", elem_id="cancel")
                with gr.Column(scale=2, min_width=400):
                    train_status = gr.Markdown(tr("train.press"), elem_id="train-status")
                    with gr.Row():
                        loss_plot = gr.LinePlot(x="epoch", y="loss", color="series", color_map=train_tab.COLOURS,
                                                label=tr("train.loss_plot"), color_title="",  # the label names the
                                                # colours; a legend's title row pushed the x axis title out
                                                height=260, elem_id="loss-plot")
                        acc_plot = gr.LinePlot(x="seconds", y="accuracy", color="series", color_map=train_tab.COLOURS,
                                               y_lim=[0, 100], height=260, label=tr("train.acc_plot"), color_title="",
                                               elem_id="acc-plot")
                    trained_file = gr.File(label=tr("train.file"), interactive=False,
                                           elem_id="trained-file", height=80)
        with gr.Tab(tr("tab.compare"), id="compare"):
            gr.Markdown(tr("compare.explain"))
            with gr.Row(equal_height=False):
                cmp_image = gr.Image(compare.example_image() or None, type="filepath", label=tr("compare.image"), height=200,
                                     sources=["upload", "clipboard"], elem_id="compare-image", scale=1,
                                     image_mode=None)  # the file undecoded: only convformer.images decodes it
                with gr.Column(scale=3):
                    cmp_btn = gr.Button(tr("compare.run"), variant="primary",
                                        elem_id="compare-run")
            cmp_out = []
            with gr.Row(equal_height=False):
                for f in FUSIONS:
                    with gr.Column(min_width=180):
                        cmp_out += [gr.Markdown(f"### {f}"), gr.Label(num_top_classes=3, label=tr("compare.top")),
                                    gr.Image(label=tr(compare.OVERLAY[f]), interactive=False, format="jpeg", height=180),
                                    gr.Image(label=tr(compare.CHANNELS[f]), interactive=False, format="jpeg",
                                             height=180)]
            gr.Markdown(tr("compare.split"))
            with gr.Row(equal_height=False):
                split_n = gr.Slider(10, 2000, 500, step=10, label=tr("compare.test_images"), scale=3)
                split_btn = gr.Button(tr("compare.score"), variant="primary", scale=1, elem_id="compare-split")
            split_note = gr.Markdown()
            with gr.Row(equal_height=False):
                split_table = gr.Dataframe(headers=compare.HEADERS, interactive=False, elem_id="compare-table",
                                           scale=3)
                split_plot = gr.BarPlot(x="model", y="accuracy (%)", y_lim=[0, 100], sort=None, height=300, scale=2,
                                        label=tr("compare.test_acc"), elem_id="compare-plot")
            gr.Markdown(tr("refs.explain"))
            ref_btn = gr.Button(tr("refs.run"), variant="primary", elem_id="compare-imagenet")
            ref_gallery = gr.Gallery(label=tr("refs.gallery"), columns=5, height=260, allow_preview=True,
                                     interactive=False, elem_id="imagenet-gallery")
            ref_table = gr.Dataframe(headers=imagenet.headers(), interactive=False, wrap=True,
                                     elem_id="imagenet-table")

    relang = gr.Button("", elem_id="cf-relang")  # hidden; i18n.HEAD clicks it when the page's language changes
    run_state, point = gr.State(None, time_to_live=3600), gr.State(None)
    address = gr.Textbox(visible=False)  # the query string of the controls, for the address bar

    # the Explore controls, one component per field of Controls: handlers take them as `*controls` (spread)
    parts = dict(fusion=fusion, preset=preset, img_size=img_size, embed_dim=embed_dim, depth=depth,
                 num_heads=num_heads, mlp_ratio=mlp_ratio, patch_size=patch_size, conv_widths=conv_widths,
                 conv_depths=conv_depths, merge=merge, weights=weights, checkpoint=checkpoint)
    controls = [parts[k] for k in Controls.names()]
    trained = gr.State(None, delete_callback=train_tab.forget)  # this session's Train-tab checkpoint path
    predict_inputs = [image, *controls, cam_target, top_k, head_fusion, discard, cam_layer, trained, resize]
    named = dict(parts, label=label, notice=notice, stats=stats, maps_note=maps_note, rollout=rollout, patch=patch,
                 query=query, blocks=blocks, heads=heads, channels=channels, cam=cam, table=table, diagram=diagram,
                 run=run_state, point=point, block=block, head=head, stage=stage, cam_target=cam_target, cam_layer=cam_layer,
                 cam_note=cam_note,
                 caution=caution)
    predict_outputs = [named[k] for k in explore.PREDICT_OUTPUTS]
    set_controls = [named[k] for k in explore.CONTROL_OUTPUTS]
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

    # Train: the generator streams progress; Cancel stops the event and the thread, then shows what was kept
    train_outputs = [train_status, loss_plot, acc_plot, trained_file, trained]
    train_event = train_btn.click(train_tab.train, [dataset, data_zip, epochs, lr, batch_size, train_images, train_img,
                                                    *controls, train_arch], train_outputs, api_name="train",
                                  concurrency_limit=None, time_limit=LIM.time_limit + 60)  # jobs: train_tab's limits
    train_event.then(explore.on_trained, [*controls, trained], set_controls, api_name="use_trained")
    cancel_btn.click(train_tab.cancel, None, train_status, cancels=[train_event], api_name="cancel_training").then(
        train_tab.after_cancel, None, train_outputs, api_name="after_cancel").then(
        explore.on_trained, [*controls, trained], set_controls, api_name="use_cancelled")
    dataset.change(train_tab.dataset_controls, dataset, [data_zip, train_images], api_name="dataset_controls")
    train_arch.change(train_tab.on_model, train_arch, [epochs, lr, batch_size, train_images, train_img],
                      api_name="train_recipe")
    train_described = [*controls, train_img, epochs, train_images, train_arch]
    gr.on([demo.load, *(c.change for c in (*controls, train_img, epochs, train_images, train_arch))], train_tab.describe,
          train_described, train_model,
          api_name="train_model")
    demo.unload(train_tab.leave)
    cmp_btn.click(session.guard(compare.compare_image), cmp_image, cmp_out, api_name="compare_image")
    split_btn.click(compare.compare_split, split_n, [split_table, split_plot, split_note], api_name="compare_split")
    ref_btn.click(session.handled(imagenet.compare), cmp_image, [ref_table, ref_gallery], api_name="compare_imagenet")
    # texts built in Python follow the page's language: on load, and again when it is changed in Settings
    retold = [notice, config_status, maps_note, table, diagram]
    demo.load(explore.on_load, None, set_controls, api_name="load_config").then(
        explore.retell, [*controls, trained, run_state], retold, api_name=False)
    relang.click(explore.retell, [*controls, trained, run_state], retold, api_name=False)
    relang.click(train_tab.describe, train_described, train_model, api_name=False)
    gr.on([demo.load, relang.click], train_tab.axes, None, [loss_plot, acc_plot], api_name=False)
    demo.load(compare.headers, None, [split_table, split_plot], api_name=False)
    demo.load(imagenet.empty_table, None, ref_table, api_name=False)
    demo.load(explore.gallery, None, gallery, api_name=False)  # the captions in the page's language
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
