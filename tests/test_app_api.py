"""The app through its HTTP API (gradio_client), served by the `server` fixture.

Every fusion stage runs through /predict; a refusal (an impossible config, a bad checkpoint) arrives as a clear
message without server paths or tracebacks, and the next request still works. The variety of images (bad ones,
and valid but unusual ones) is checked where it is decided (tests/test_data.py, the library) and once through the
running app with the whole generated corpus (tests/test_robustness.py), not again here. Small configs (64 px)
keep this fast on a CPU.
"""
from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image

import convformer as cf
from convformer.data.shapes import render

import gradio_client  # noqa: E402
from gradio_client import Client, handle_file  # noqa: E402
from gradio_client.exceptions import AppError  # noqa: E402

pytestmark = pytest.mark.app

SMALL = {"img_size": 64, "weights": "random"}
OUT = ("label", "notice", "stats", "maps_note", "rollout", "patch", "query", "blocks", "heads", "channels", "cam",
       "table", "diagram", "block", "head", "stage", "cam_target")  # PREDICT_OUTPUTS without the gr.State ones


@pytest.fixture(scope="module")
def client(server) -> Client:
    return Client(server.url, verbose=False)


@pytest.fixture(scope="module")
def shape_png(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("img") / "star.png"
    render(3, "test", 96)[0].save(path)
    return path


def _predict(client: Client, image: Path, fusion: str = "mid", **kwargs) -> dict:
    out = client.predict(handle_file(str(image)), fusion, **{**SMALL, **kwargs}, api_name="/predict")
    return dict(zip(OUT, out))


def _error(client: Client, image: Path, **kwargs) -> str:
    with pytest.raises(AppError) as info:
        _predict(client, image, **kwargs)
    message = str(info.value)
    assert "Traceback" not in message and "/tmp" not in message and "site-packages" not in message, message
    return message


def test_api_lists_predict_with_defaults(client: Client) -> None:
    params = client.view_api(return_format="dict", print_info=False)["named_endpoints"]["/predict"]["parameters"]
    names = [p["parameter_name"] for p in params]
    assert names[:2] == ["image", "fusion"]
    assert all(p["parameter_has_default"] for p in params[1:])


def test_predict_minimal_call(client: Client, shape_png: Path) -> None:
    """The call from the README: only the image and the fusion stage."""
    out = client.predict(handle_file(str(shape_png)), "mid", api_name="/predict")
    label = out[0]
    assert label["label"] and abs(sum(c["confidence"] for c in label["confidences"])) <= 1.0 + 1e-6
    assert "eights" in out[1]  # "Weights: bundled checkpoint ..." or "Random weights: ..."


@pytest.mark.parametrize("fusion", cf.FUSIONS)
def test_predict_every_fusion(client: Client, shape_png: Path, fusion: str) -> None:
    out = _predict(client, shape_png, fusion, top_k=3)
    assert len(out["label"]["confidences"]) == 3
    assert "Random weights" in out["notice"]
    rows = out["table"]["data"]
    assert rows[0][2] == "(B=1, C=3, H=64, W=64)" and rows[-2][0] == "head" and rows[-2][2] == "(B=1, classes=10)"
    assert "FLOPs" in out["stats"] and "cpu" in out["stats"]
    assert (out["rollout"] is None) == (fusion == "cnn")
    assert (out["cam"] is None) == (fusion == "vit")
    assert (out["channels"] is None) == (fusion == "vit")
    for key in ("rollout", "cam", "channels", "query"):
        if out[key] is not None:
            assert Image.open(out[key]).size[0] > 0
    if fusion == "late":  # both branches' maps
        assert "ViT branch" in out["maps_note"] and "CNN branch" in out["maps_note"]
        assert "cnn" in out["diagram"] and "vit" in out["diagram"]


def test_impossible_config_gives_message(client: Client, shape_png: Path) -> None:
    message = _error(client, shape_png, embed_dim=100, num_heads=3)
    assert "embed_dim=100 is not allowed" in message
    message = _error(client, shape_png, conv_widths="32, 64", conv_depths="1")
    assert "conv_depths" in message
    status = client.predict("mid", "convformer_mid_tiny", 64, 100, 4, 3, 4, 16, "32, 64", "1, 1", "concat", "random",
                            None, api_name="/check_config")
    assert "impossible" in status and "embed_dim=100" in status


def _checkpoint(tmp: Path, name: str, **overrides) -> Path:
    model = cf.create("convformer_mid_tiny", num_classes=3, img_size=64, embed_dim=32, depth=1, num_heads=2,
                      conv_widths=(8, 16, 24, 32), conv_depths=(0, 0, 0, 0), **overrides)
    return cf.save_checkpoint(model, tmp / name, classes=["red", "green", "blue"], dataset="unit-test",
                              metrics={"test_acc": 0.5})


def test_uploaded_checkpoint(client: Client, shape_png: Path, tmp_path: Path) -> None:
    path = _checkpoint(tmp_path, "mine.safetensors")
    fits = dict(weights="upload", checkpoint=handle_file(str(path)), embed_dim=32, depth=1, num_heads=2,
                conv_widths="8, 16, 24, 32", conv_depths="0, 0, 0, 0")
    out = _predict(client, shape_png, **fits)
    assert "your checkpoint" in out["notice"] and "unit-test" in out["notice"]
    assert {c["label"] for c in out["label"]["confidences"]} <= {"red", "green", "blue"}
    message = _error(client, shape_png, **{**fits, "embed_dim": 64})  # does not fit the chosen configuration
    assert "does not fit" in message and "embed_dim=32" in message


def test_bad_checkpoints_give_message(client: Client, shape_png: Path, tmp_path: Path) -> None:
    fake = tmp_path / "fake.safetensors"
    fake.write_bytes(b"\x80\x04\x95 pickle, not safetensors" * 20)
    assert "cannot be used" in _error(client, shape_png, weights="upload", checkpoint=handle_file(str(fake)))
    pickle = tmp_path / "weights.pt"
    pickle.write_bytes(b"\x80\x04\x95" + b"\0" * 100)
    assert "safetensors" in _error(client, shape_png, weights="upload", checkpoint=handle_file(str(pickle)))
    assert "Upload a .safetensors" in _error(client, shape_png, weights="upload")
    assert _predict(client, shape_png, "cnn")["label"]["label"]


def test_redraw_endpoints_need_a_run_and_link_roundtrips(client: Client) -> None:
    query = client.predict("late", "convformer_late_tiny", 64, 96, 6, 3, 4, 16, "16, 32, 64, 128", "1, 1, 1, 1",
                           "gate", "random", api_name="/link")
    assert query.startswith("?") and "fusion=late" in query and "depth=6" in query and "merge=gate" in query


def test_grad_cam_for_a_chosen_class(client: Client, shape_png: Path) -> None:
    out = _predict(client, shape_png, "mid", cam_target="class 3")
    assert "explains **class 3**" in out["maps_note"] and out["cam_target"]["value"] == "class 3"


def test_capture_and_example_endpoints_hand_over_a_file(client: Client, shape_png: Path) -> None:
    path = client.predict(handle_file(str(shape_png)), api_name="/capture")
    assert Image.open(path).size == (96, 96)
    preview, status = client.predict(handle_file(str(shape_png)), api_name="/preview")
    assert Image.open(preview).size[0] > 96 and status == ""


def test_redraw_uses_the_sessions_last_run(server, shape_png: Path) -> None:
    session = Client(server.url, verbose=False)  # gr.State is per session
    with pytest.raises(AppError, match="Run the model first"):
        session.predict("max", 0.5, "vit.blocks.0", "head 0", api_name="/attention")
    session.predict(handle_file(str(shape_png)), "vit", img_size=64, weights="random", depth=2,
                     api_name="/predict")
    rollout, patch, query, blocks, heads = session.predict("max", 0.5, "vit.blocks.0", "head 0",
                                                            api_name="/attention")
    assert Image.open(rollout).size == Image.open(query).size


def test_benchmark_http_client_gets_what_gradio_client_gets(client: Client, server, shape_png: Path) -> None:
    """The benchmark's browser-like client (benchmarks/http_client.py) speaks the same protocol: same label,
    every picture fetched, and a failing request is reported, not timed."""
    from benchmarks.http_client import HttpClient, _urls
    http = HttpClient(server.url)
    try:
        raw = http.predict(shape_png, **SMALL)
        assert raw[0] == _predict(client, shape_png)["label"]
        pictures = [u for o in raw for u in _urls(o)]
        assert len(pictures) == 8  # rollout, patch, query, blocks, heads, channels, cam, relevance
        with pytest.raises(RuntimeError, match="request failed"):
            http.predict(shape_png, **{**SMALL, "depth": 1.5})
    finally:
        http.close()


def test_served_queue_is_paced(server) -> None:
    """Gradio 6.31 polls its queue every millisecond and its progress every 10 ms, busy or not; the served app
    keeps gradio_patches.pace_queue's slower pace (the idle server's CPU and the training runs' slowdown it caused:
    benchmarks/NOTES.md section 11). Every other test of this module is served at that pace."""
    from convformer_app import gradio_patches
    queue = server.demo._queue
    assert queue.sleep_when_free == gradio_patches.QUEUE_POLL_S == 0.01
    assert queue.progress_update_sleep_when_free == gradio_patches.PROGRESS_POLL_S == 0.1


def test_training_shows_gradio_progress_on_the_status_line_only(server) -> None:
    """Gradio's progress timer, on every output of /train, was redrawn every frame by five trackers at once: a
    browser on the same 2 cores took a third of a core and the run 1.2x its time (benchmarks/NOTES.md section
    12). The bar stays, on the status line."""
    (train,) = [d for d in server.demo.config["dependencies"] if d.get("api_name") == "train"]
    assert len(train["outputs"]) == 5 and train["show_progress"] == "full"
    (shown,) = train["show_progress_on"]
    assert server.demo.blocks[shown].elem_id == "train-status"
