"""The weights choice "Pretrained on ImageNet" through the app's API (gradio_client, the `server` fixture),
offline: the server runs in this process, so pointing huggingface_hub at the fake cache of
tests/_fake_hub.py (random weights in each reference's architecture, HF_HUB_OFFLINE on) is what the server
sees. Every Explore view for every stage, per-block grids, the Compare table of the five references, the
'unlike the Shapes data' line beside the Shapes weights' prediction, and the one-line failure when the
weights cannot be had (while everything else keeps working).
"""
from __future__ import annotations

import re

import shutil
import time
from pathlib import Path

import pytest
from PIL import Image

from convformer.references import REFERENCES, imagenet_labels, params
from convformer_app.explore.handlers import PREDICT_OUTPUTS

from . import _fake_hub

import gradio_client  # noqa: E402
from gradio_client import Client, handle_file  # noqa: E402
from gradio_client.exceptions import AppError  # noqa: E402

pytestmark = pytest.mark.app

ROOT = Path(__file__).resolve().parents[1]
CAT = ROOT / "assets" / "examples" / "photo_chelsea_cat.jpg"
STAR = ROOT / "assets" / "examples" / "shapes_star.png"
OUT = tuple(k for k in PREDICT_OUTPUTS if k not in ("run", "point"))  # what the API returns (no gr.State)


@pytest.fixture(scope="module")
def hub() -> Path:
    hub = _fake_hub.cache()
    with pytest.MonkeyPatch.context() as mp:
        _fake_hub.offline(mp, hub)
        yield hub


@pytest.fixture(scope="module")
def client(server, hub) -> Client:
    return Client(server.url, verbose=False)


def _predict(client: Client, image: Path, fusion: str, **kwargs) -> dict:
    kwargs = {"weights": "imagenet", "preset": f"convformer_{fusion}_tiny", **kwargs}  # the preset does not apply
    out = client.predict(handle_file(str(image)), fusion, **kwargs, api_name="/predict")
    return dict(zip(OUT, out))


@pytest.mark.parametrize("fusion", list(REFERENCES))
def test_every_view_of_every_stage(client, fusion):
    out = _predict(client, CAT, fusion)
    labels = [c["label"] for c in out["label"]["confidences"]]
    assert len(labels) == 5 and set(labels) <= set(imagenet_labels())
    assert "pretrained on ImageNet" in out["notice"] and REFERENCES[fusion].names[0] in out["notice"]
    assert REFERENCES[fusion].attention in out["maps_note"]
    attention, conv = fusion != "cnn", fusion != "vit"
    for key in ("rollout", "query", "blocks", "heads"):
        assert (out[key] is not None) == attention, key
    for key in ("channels", "cam"):
        assert (out[key] is not None) == conv, key
    if attention:  # the maps cover what the model saw: the 224 x 224 centre crop, shown square
        assert Image.open(out["rollout"]).size == Image.open(out["query"]).size == (320, 320)
    rows = out["table"]["data"]
    assert "224" in rows[1][1] and "1000" in rows[-2][2]  # (B, 3, 224, 224) in, (B, 1000) out
    assert rows[-1][0] == "total" and out["diagram"] and out["caution"] == ""


def test_blocks_on_different_grids_draw_on_their_own(server, hub):
    """CoAtNet attends over 14 x 14 in stage 2 and 7 x 7 in stage 3: every per-block view uses the block's grid."""
    session = Client(server.url, verbose=False)
    out = dict(zip(OUT, session.predict(handle_file(str(CAT)), "mid", preset="convformer_mid_tiny",
                                                weights="imagenet", api_name="/predict")))
    assert "own grid" in out["maps_note"] and out["block"]["value"] == "stages.3.blocks.2"
    for block in ("stages.2.blocks.0", "stages.3.blocks.1"):
        rollout, patch, query, blocks, heads = session.predict("max", 0.5, block, "head 1", api_name="/attention")
        assert Image.open(query).size == Image.open(patch).size
        assert Image.open(blocks).size[0] > Image.open(blocks).size[1]  # one cell per block of that grid


def test_compare_the_references_side_by_side(client):
    table, gallery, note = client.predict(handle_file(str(CAT)), api_name="/compare_imagenet")
    assert note == ""
    rows = table["data"]
    assert [r[0] for r in rows] == list(REFERENCES)
    assert [r[1] for r in rows] == [ref.label for ref in REFERENCES.values()]
    for row, fusion in zip(rows, REFERENCES):
        assert row[2].count(";") == 2 and row[3] == round(params(fusion) / 1e6, 2) and row[4] > 0 and re.fullmatch(r"[\d.]+ \([\d.]+-[\d.]+\)( ⚠)?", row[5])
    assert len(gallery) == 5 and all(Path(item["image"]).is_file() for item in gallery)


def test_shapes_weights_say_a_photo_is_unlike_their_data(client):
    photo = _predict(client, CAT, "mid", weights="bundled")
    shape = _predict(client, STAR, "mid", weights="bundled")
    assert "unlike the Shapes data" in photo["caution"] and shape["caution"] == ""
    assert _predict(client, CAT, "mid", weights="random")["caution"] == ""  # random weights know nothing anyway


@pytest.mark.parametrize("way", ["offline", "unreachable"])
def test_weights_that_cannot_be_had_are_one_line_and_the_rest_works(client, monkeypatch, tmp_path, way):
    from huggingface_hub import constants
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path))  # nothing cached
    if way == "unreachable":  # online, but the Hub refuses the connection
        monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
        monkeypatch.setattr(constants, "HUGGINGFACE_CO_URL_TEMPLATE",
                            "http://127.0.0.1:9/{repo_id}/resolve/{revision}/{filename}")
    start = time.perf_counter()
    with pytest.raises(AppError) as info:
        _predict(client, CAT, "vit")
    assert time.perf_counter() - start < 20  # the server answers at once; most of this is the client
    message = str(info.value)
    assert ("not in the Hugging Face cache" if way == "offline" else "is unreachable") in message
    assert "\n" not in message.strip()
    assert "Traceback" not in message and str(tmp_path) not in message
    assert _predict(client, STAR, "mid", weights="bundled")["label"]["label"]  # everything else keeps working
    table, gallery, note = client.predict(handle_file(str(CAT)), api_name="/compare_imagenet")  # no error badges:
    assert table["data"] == [] and gallery == [] and note.startswith("The ImageNet references are not on this")


def test_download_progress_is_said_on_the_page(monkeypatch, tmp_path, hub):
    """The first run downloads into the cache (simulated here by copying from the fake Hub); the request's
    progress bar says what is downloaded and how big it is."""
    from huggingface_hub import constants

    from convformer import references
    from convformer_app.weights import reference
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path))
    monkeypatch.setattr(references, "download_size", lambda name, **kw: 23_000_000)

    def download(repo: str, filename: str) -> str:  # what hf_hub_download does, minus the network
        folder = f"models--{repo.replace('/', '--')}"
        shutil.copytree(hub / folder, tmp_path / folder)
        return str(references.cached_weights(repo.split("/", 1)[1]))
    monkeypatch.setattr(references, "hf_hub_download", download)
    said = []
    reference("vit").fetch(progress=lambda *a, **k: said.append(k.get("desc")))
    assert said == ["Downloading deit_tiny_patch16_224.fb_in1k (23 MB) into the Hugging Face cache, once"]
    assert references.is_cached("vit")


def test_grad_cam_layer_choice_on_a_reference(client):
    out = _predict(client, CAT, "mid", cam_layer="stem")
    assert "`stem`" in out["maps_note"] and out["cam"] is not None
    assert out["cam_layer"]["choices"] == [["stem", "stem"], ["stages.0", "stages.0"], ["stages.1", "stages.1"]]


def test_diagram_follows_a_reference_in_order(client):
    html = _predict(client, CAT, "mid")["diagram"]
    steps = ["stem", "stages.0", "stages.1", "stages.2", "stages.3"]
    at = [html.index(f"<b>{s}</b>") for s in steps]
    assert at == sorted(at) and "(B=1, C=512, H=7, W=7)" in html
