"""ConvFormer Lab: build a conv + transformer hybrid, run it on an image, and see what it predicts, where it
attends, what its convolutions respond to and the shape of the data at every step.

The page's outline and launch only: each tab is laid out and wired by `build()` in its page module
(convformer_app/explore/page.py, train/page.py, compare/page.py); the handlers live beside them
(`handlers.py` of each tab) around the app's core (controls, weights, engine, views). Here: the tabs, the state
they share, and the texts that follow the page's language. Run: python app.py [--host --port --share --device]
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

from convformer_app import console, engine, gradio_patches, i18n, references, safety  # noqa: E402
from convformer_app.compare import handlers as compare, page as compare_page  # noqa: E402
from convformer_app.explore import handlers as explore, page as explore_page  # noqa: E402
from convformer_app import study, study_page  # noqa: E402
from convformer_app.i18n import tr  # noqa: E402
from convformer_app.train import curves as train_curves, handlers as train_tab  # noqa: E402
from convformer_app.train import jobs as train_jobs, page as train_page  # noqa: E402

CSS = (Path(__file__).parent / "convformer_app" / "page.css").read_text()


with gr.Blocks(title="ConvFormer Lab", delete_cache=(3600, 3600)) as demo:
    gr.Markdown(tr("app.intro"))
    run_state, point = gr.State(None, time_to_live=3600), gr.State(None)  # the last run; a clicked patch
    trained = gr.State(None, delete_callback=train_jobs.forget)  # this session's Train-tab checkpoint path
    with gr.Tabs(elem_id="pages"):
        with gr.Tab(tr("tab.explore"), id="explore"):
            page = explore_page.build(run_state, point, trained)
        with gr.Tab(tr("tab.train"), id="train"):
            train = train_page.build(page.controls, trained, page.set_controls)
        with gr.Tab(tr("tab.compare"), id="compare"):
            comparison = compare_page.build()
        with gr.Tab(tr("tab.study"), id="study"):
            studied = study_page.build()

    relang = gr.Button("", elem_id="cf-relang")  # hidden; i18n.HEAD clicks it when the page's language changes

    # texts built in Python follow the page's language: on load, and again when it is changed in Settings
    told = [*page.controls, trained, run_state]
    demo.load(explore.on_load, None, page.set_controls, api_name="load_config").then(
        explore.retell, told, page.retold, api_name=False, show_progress="hidden")  # the same texts, re-told
    relang.click(explore.retell, told, page.retold, api_name=False, show_progress="hidden")
    gr.on([demo.load, relang.click], train_tab.describe, train.described, train.model, api_name=False)
    gr.on([demo.load, relang.click], train_curves.axes, None, train.plots, api_name=False)
    gr.on([demo.load, relang.click], study.committed, None, studied.committed, api_name=False)
    demo.load(compare.headers, None, [comparison.split_table, comparison.split_plot], api_name=False)
    demo.load(references.empty_table, None, comparison.ref_table, api_name=False)
    demo.load(explore.gallery, None, page.gallery, api_name=False)  # the captions in the page's language
    demo.unload(train_tab.leave)  # a closed page stops its training run
    gradio_patches.localize(demo, i18n.localized)  # every handler answers in the language of the page that called it


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
    print(f"ConvFormer Lab on {engine.start(device)}")
    gradio_patches.install_messages(safety.message)  # every refusal: the app's own one-line message
    safety.bound_heap()  # freed memory goes back to the system: peaks do not pile up across sessions
    train_tab.start_up()  # ended processes' runs removed; a spare worker; the default run's data soon
    safety.start_janitor(Path(gr.utils.get_upload_folder()), [train_jobs.prune, explore.prune_code])  # uploads, runs, /code
    explore.warm_up()  # the default model loads while the server starts
    demo.queue(default_concurrency_limit=2, max_size=32)
    gradio_patches.pace_queue(demo)  # Gradio polls its queue a thousand times a second: ten times less
    demo.launch(server_name=host, server_port=port, share=share, show_error=False,
                allowed_paths=[str(engine.EXAMPLES)], max_file_size="25mb", footer_links=["api", "settings"],
                theme=gr.themes.Soft(), css=CSS, i18n=i18n.I18N, head=i18n.HEAD + console.HEAD, **extra)  # Settings: the language


if __name__ == "__main__":
    main()
