"""Each change the app makes to Gradio's internals (convformer_app/gradio_patches.py) still takes effect on the
installed Gradio: these fail, by patch, when an upgrade moves what a patch relies on."""
from __future__ import annotations

import inspect
from pathlib import Path

import gradio as gr
import gradio.image_utils
import gradio.processing_utils as pu
import gradio.queueing
import gradio.routes
import gradio.utils
import pytest
from PIL import Image

from convformer_app import gradio_patches as gp

pytestmark = pytest.mark.app


def test_the_patches_were_written_for_the_installed_gradio() -> None:
    assert gr.__version__ == gp.GRADIO_VERSION, (
        f"Gradio {gr.__version__} is installed; the patches were written for {gp.GRADIO_VERSION}: check each "
        "against the new version (the tests below), then update GRADIO_VERSION and requirements.txt")
    assert {p.name for p in gp.PATCHES} == {"install_picture_cache", "install_messages", "pace_queue", "localize",
                                            "add_translation"}
    from convformer_app import route_guards  # the routes' guards, installed by install_messages
    assert route_guards.GRADIO_VERSION == gp.GRADIO_VERSION
    assert all(callable(getattr(gp, p.name)) for p in gp.PATCHES)


def test_picture_cache_is_what_gradio_saves_images_with(monkeypatch, tmp_path: Path) -> None:
    assert inspect.signature(pu.save_pil_to_cache).parameters.keys() == \
        inspect.signature(gp.save_pil_to_cache).parameters.keys()
    monkeypatch.setattr(pu, "save_pil_to_cache", pu.save_pil_to_cache)  # restored after the test
    gp.install_picture_cache()
    picture = Image.new("RGB", (16, 16), "blue")
    first = Path(gradio.image_utils.save_image(picture, str(tmp_path)))  # how gr.Image outputs are saved
    inode = first.stat().st_ino
    assert first.parent.name == pu.hash_bytes(pu.encode_pil_to_bytes(picture, "webp"))
    second = Path(gradio.image_utils.save_image(picture, str(tmp_path)))
    assert second == first and first.stat().st_ino == inode  # kept, not rewritten in place


def test_error_payloads_and_logged_errors_go_through_the_message(monkeypatch, capsys) -> None:
    for module in (gradio.utils, gradio.queueing):
        monkeypatch.setattr(module, "error_payload", module.error_payload)
    for module in (gradio.queueing, gradio.routes, gradio.utils):
        monkeypatch.setattr(module, "traceback", module.traceback)
        assert "traceback.print_exc" in inspect.getsource(module) or module is gradio.utils
    assert list(inspect.signature(gradio.utils.error_payload).parameters) == ["error", "show_error"]
    gp.install_messages(lambda error: f"one line: {type(error).__name__}")
    payload = gradio.queueing.error_payload(ValueError("x" * 10_000), False)
    assert payload["error"] == "one line: ValueError" and payload["visible"] is True
    try:
        raise gr.Error("no")
    except gr.Error:
        gradio.queueing.traceback.print_exc()
    assert capsys.readouterr().err.strip() == "refused: one line: Error"


def test_queue_is_paced_through_its_two_attributes() -> None:
    with gr.Blocks() as demo:
        gr.Button().click(lambda: None)
    demo.queue()
    queue = demo._queue
    assert (queue.sleep_when_free, queue.progress_update_sleep_when_free) == (0.001, 0.01)  # Gradio's own
    source = inspect.getsource(gradio.queueing.Queue)
    assert "self.sleep_when_free" in source and "self.progress_update_sleep_when_free" in source
    gp.pace_queue(demo)
    assert (queue.sleep_when_free, queue.progress_update_sleep_when_free) == (gp.QUEUE_POLL_S, gp.PROGRESS_POLL_S)


def test_localize_wraps_the_handler_gradio_calls() -> None:
    def shout(fn):
        return lambda *args: fn(*args).upper()

    with gr.Blocks() as demo:
        box, out = gr.Textbox(), gr.Textbox()
        gr.Button().click(lambda text: f"hello {text}", box, out, api_name="hello")
    gp.localize(demo, shout)
    gp.localize(demo, shout)  # once only
    assert demo("you", api_name="hello") == "HELLO YOU"


def test_added_translations_reach_the_front_end_config() -> None:
    i18n = gr.I18n(en={"a": "A"}, **{"zh-CN": {"a": "甲"}})
    gp.add_translation(i18n, "b", {"en": "B", "zh-CN": "乙"})
    assert i18n.translations_dict == {"en": {"a": "A", "b": "B"}, "zh-CN": {"a": "甲", "b": "乙"}}
    assert "i18n_instance.translations_dict" in inspect.getsource(gradio.routes)
