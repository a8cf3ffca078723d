"""The Train tab's layout and events; its handlers live in handlers.py. app.py calls `build` inside the tab
and wires the returned components into the texts that follow the page's language."""
from __future__ import annotations

from dataclasses import dataclass

import gradio as gr

from .. import i18n
from ..explore import handlers as explore
from . import curves, handlers
from ..i18n import tr
from ..tasks import page as task_page


@dataclass(frozen=True)
class TrainPage:
    """What the rest of the page wires to: the model line, describe's inputs, the two charts."""
    model: gr.Markdown
    described: list
    plots: list


def build(controls: list, trained: gr.State, set_controls: list) -> TrainPage:
    """Lay out the Train tab (call it inside the tab) and wire its events. `controls`: Explore's components in
    Controls order; `trained`: the session's checkpoint path (a gr.State); `set_controls`: what
    explore.on_trained updates (explore.CONTROL_OUTPUTS), so that a finished run is ready in Explore."""
    gr.Markdown(tr("train.explain"))
    with gr.Row(equal_height=False):
        c = settings_column()
        c.update(results_column())
    described = wire(c, controls, trained, set_controls)
    task_page.train_section(trained)  # detect and segment (issue 23): the metric live against time
    return TrainPage(c["model"], described, [c["loss_plot"], c["acc_plot"]])


def settings_column() -> dict:
    """The left column: the model, the data and the recipe (within the app's limits)."""
    lim, r = handlers.limits(), handlers.R
    with gr.Column(scale=1, min_width=300):
        arch = gr.Radio(i18n.choices({**{f: f"fusion.{f}" for f in curves.TYPICAL},
                                      "explore": "train.arch_explore"}),
                        value=handlers.recipes.DEFAULT, label=tr("train.arch"), info=tr("train.arch_info"),
                        elem_id="train-arch")
        model = gr.Markdown(elem_id="train-model")
        dataset = gr.Radio(i18n.choices({k: f"dataset.{k}" for k in handlers.DATASETS}), value="shapes",
                           label=tr("train.dataset"))
        data_zip = gr.File(label=tr("train.zip"), file_types=[".zip"], type="filepath", visible=False, height=100)
        images = gr.Slider(100, lim.max_images, min(r.train_size, lim.max_images), step=100,
                           label=tr("train.images"), info=tr("train.images_info"))
        img = gr.Slider(32, lim.max_img_size, min(r.img_size, lim.max_img_size), step=8,
                        label=tr("train.img_size"), info=tr("train.img_size_info"))
        with gr.Row():
            epochs = gr.Slider(1, lim.max_epochs, min(r.epochs, lim.max_epochs), step=1, label=tr("train.epochs"))
            batch_size = gr.Slider(8, 256, r.batch_size, step=8, label=tr("train.batch_size"))
        lr = gr.Number(r.lr, label=tr("train.lr"), minimum=1e-6, maximum=1)
        gr.Markdown(i18n.fixed(handlers.limits_text))
    return dict(arch=arch, model=model, dataset=dataset, data_zip=data_zip, images=images, img=img, epochs=epochs,
                batch_size=batch_size, lr=lr)


def results_column() -> dict:
    """The right column: Train, Cancel, the status line, the two charts and the checkpoint."""
    with gr.Column(scale=2, min_width=400):
        # Train, Cancel and the status line together, at the top of the results: in view on a laptop, and
        # right after the settings on a phone
        with gr.Row():
            train_btn = gr.Button(tr("train.train"), variant="primary", elem_id="train")
            cancel_btn = gr.Button(tr("train.cancel"), variant="stop", elem_id="cancel")
        status = gr.Markdown(tr("train.press"), elem_id="train-status")
        # short plot labels (a long one took the plot's height and cut its x axis off); the colours below
        gr.Markdown(tr("train.plots_legend"), elem_id="train-legend")
        with gr.Row():  # no legend title row (color_title=""): the line above names the colours
            loss_plot = gr.LinePlot(x="epoch", y="loss", color="series", color_map=curves.COLOURS,
                                    label=tr("train.loss_plot"), color_title="", height=300, elem_id="loss-plot")
            acc_plot = gr.LinePlot(x="seconds", y="accuracy", color="series", color_map=curves.COLOURS,
                                   y_lim=[0, 100], height=300, label=tr("train.acc_plot"), color_title="",
                                   elem_id="acc-plot")
        trained_file = gr.File(label=tr("train.file"), interactive=False, elem_id="trained-file", height=80)
    return dict(train_btn=train_btn, cancel_btn=cancel_btn, status=status, loss_plot=loss_plot, acc_plot=acc_plot,
                trained_file=trained_file)


def wire(c: dict, controls: list, trained: gr.State, set_controls: list) -> list:
    """Train (streamed), Cancel, the data and recipe controls, and the model line; returns describe's inputs."""
    lim = handlers.limits()
    dataset, data_zip, epochs, lr, batch_size, images, img, arch, model = (
        c[k] for k in ("dataset", "data_zip", "epochs", "lr", "batch_size", "images", "img", "arch", "model"))
    status, loss_plot, acc_plot, trained_file = (c[k] for k in ("status", "loss_plot", "acc_plot", "trained_file"))
    train_btn, cancel_btn = c["train_btn"], c["cancel_btn"]
    # the generator streams progress; Cancel stops the event and the thread, then shows what was kept
    outputs = [status, loss_plot, acc_plot, trained_file, trained]
    # Gradio's progress bar on the status line only (page.css puts it under the text): on every output, five
    # timers redrawn each frame cost a browser on the same 2 cores a third of a core, the run 1.2x its time
    # (benchmarks/NOTES.md section 12)
    run = train_btn.click(handlers.train, [dataset, data_zip, epochs, lr, batch_size, images, img, *controls, arch],
                          outputs, api_name="train", concurrency_limit=None, show_progress_on=[status],
                          time_limit=lim.time_limit + 60)  # jobs: handlers' limits
    run.then(explore.on_trained, [*controls, trained], set_controls, api_name="use_trained")
    # Cancel sets the run's stop switch and lets its event end by itself with what was kept: cancelling the event
    # (`cancels=`) marked its outputs with Gradio's red "Error" for seconds (issue 27)
    cancel_btn.click(handlers.cancel, None, status, api_name="cancel_training").then(
        handlers.after_cancel, None, outputs, api_name="after_cancel").then(
        explore.on_trained, [*controls, trained], set_controls, api_name="use_cancelled")
    dataset.change(handlers.dataset_controls, dataset, [data_zip, images], api_name="dataset_controls")
    arch.change(handlers.on_model, arch, [epochs, lr, batch_size, images, img], api_name="train_recipe")
    described = [*controls, img, epochs, images, arch]
    gr.on([x.change for x in (*controls, img, epochs, images, arch)], handlers.describe, described, model,
          api_name="train_model")
    return described
