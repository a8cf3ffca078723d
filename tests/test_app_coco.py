"""The "Pretrained on COCO" views (DETR) through the app's API (gradio_client, the `server` fixture), offline:
the server runs in this process, so pointing huggingface_hub at the cache of tests/_fake_detr.py (the Hub's
config files, a small DETR with random weights) with HF_HUB_OFFLINE on is what the server sees. Every view,
the one-line failure when the weights cannot be had (the rest keeps working), and the app's cold start not
importing transformers.
"""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from convformer_app import coco

from . import _fake_detr
from .test_coco_detr import offline

import gradio_client  # noqa: E402
from gradio_client import Client, handle_file  # noqa: E402
from gradio_client.exceptions import AppError  # noqa: E402

pytestmark = pytest.mark.app

ROOT = Path(__file__).resolve().parents[1]
CAT = ROOT / "assets" / "examples" / "photo_chelsea_cat.jpg"
STAR = ROOT / "assets" / "examples" / "shapes_star.png"
OUT = tuple(k for k in coco.OUTPUTS if k != "state")  # what the API returns (no gr.State)


@pytest.fixture(scope="module")
def hub(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("hf-detr") / "hub"
    _fake_detr.write(path)
    with pytest.MonkeyPatch.context() as mp:
        offline(mp, path)
        yield path


@pytest.fixture(scope="module")
def client(server, hub) -> Client:
    return Client(server.url, verbose=False)


@pytest.fixture(scope="module")
def detected(client) -> dict:
    return dict(zip(OUT, client.predict(handle_file(str(CAT)), 0.7, api_name="/coco_detect")))


def test_boxes_with_coco_names_and_every_view(detected):
    out = detected
    width, height = Image.open(CAT).size
    rows = out["table"]["data"]
    assert rows and out["table"]["headers"] == coco.TABLE_HEADERS
    for i, (n, label, score, x1, y1, x2, y2) in enumerate(rows):
        assert n == i + 1 and label == "cat" and 0.7 < score <= 1
        assert 0 <= x1 < x2 <= width + 0.1 and 0 <= y1 < y2 <= height + 0.1  # the photo's own pixels
    assert f"**{len(rows)}** object(s)" in out["summary"] and "facebook/detr-resnet-50" in out["summary"]
    shown = Image.open(out["boxes"]).size
    assert max(shown) == coco.DISPLAY and abs(shown[0] / shown[1] - width / height) < 0.02
    assert [c[1] for c in out["object"]["choices"]] == [str(i) for i in range(len(rows))]
    assert out["object"]["value"] == "0"
    assert Image.open(out["query"]).size == shown and Image.open(out["pixel"]).size == shown
    assert [item["caption"] for item in out["layers"]] == ["decoder layer 1", "decoder layer 2"]
    assert out["stage"]["choices"] == [[s, s] for s in ("layer1", "layer2", "layer3", "layer4")]
    assert out["channels"] is not None
    steps = [r[0] for r in out["shapes"]["data"]]
    assert steps[0] == "input" and "encoder x1" in steps and "decoder x2" in steps and steps[-1] == "total"
    table = {r[0]: r for r in out["shapes"]["data"]}
    assert table["class_head"][2] == "(B=1, Q=12, K+1=92)" and table["box_head"][2] == "(B=1, Q=12, 4)"
    assert table["post-process"][2].startswith(f"(M={len(rows)}, 4)")
    assert "class_head" in out["diagram"] and "(B=1, Q=12, K+1=92)" in out["diagram"]
    assert out["diagram"].count('class="cf-box"') == len(steps) - 1  # one box per step (no total)


def test_an_objects_query_map_per_head_and_layer(client, detected):
    query, layers = client.predict("0", "1", api_name="/coco_object")
    assert Image.open(query).size == Image.open(detected["boxes"]).size and len(layers) == 2
    with pytest.raises(AppError, match="Choose a detected object first"):
        client.predict("99", "mean", api_name="/coco_object")


def test_encoder_attention_for_a_pixel_conv_activations_and_grad_cam(client, detected):
    picture = client.predict(10.0, 20.0, 1, api_name="/coco_pixel")
    assert Image.open(picture).size == Image.open(detected["boxes"]).size
    assert client.predict("layer2", api_name="/coco_channels") is not None
    cam = client.predict("0", api_name="/coco_cam")
    assert Image.open(cam).size == Image.open(detected["boxes"]).size


def test_redraws_before_a_detection_say_so(server, hub):
    fresh = Client(server.url, verbose=False)
    with pytest.raises(AppError, match="Detect objects first"):
        fresh.predict("0", "mean", api_name="/coco_object")


def test_a_high_threshold_finds_nothing_and_says_so(client):
    out = dict(zip(OUT, client.predict(handle_file(str(STAR)), 0.99, api_name="/coco_detect")))
    assert out["table"]["data"] == [] and "lower the threshold" in out["summary"] and out["query"] is None


def test_weights_that_cannot_be_had_are_one_line_and_the_rest_works(client, hub, tmp_path, monkeypatch):
    offline(monkeypatch, tmp_path)  # an empty cache, offline
    with pytest.raises(AppError) as e:
        client.predict(handle_file(str(CAT)), 0.7, api_name="/coco_detect")
    message = str(e.value)
    assert "HF_HUB_OFFLINE" in message and "\n" not in message.strip() and "Traceback" not in message
    out = client.predict(handle_file(str(STAR)), "mid", img_size=64, weights="random", api_name="/predict")
    assert out[0]["label"]  # our own models keep working


def test_the_app_starts_without_transformers():
    code = "import sys, json, app; print(json.dumps(sorted(m for m in ('transformers',) if m in sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert json.loads(out.stdout.strip().splitlines()[-1]) == []


def test_the_detect_tasks_seam_gets_a_detections_like_value(hub):
    """What issue 23's Detect views take (tasks/results.py: boxes, scores, labels, per-layer attention)."""
    photo = Image.open(CAT).convert("RGB")
    value, classes, notice = coco.found(photo, 0.7)
    n = len(value.boxes)
    assert n and value.scores.shape == (n,) and classes[int(value.labels[0])] == "cat"
    assert value.attention.shape[:2] == (n, 2) and "facebook/detr-resnet-50" in notice
