"""The Compare tab: every fusion stage on one image and on a fresh test split, through the running app and
its handlers. A small split (30 images) keeps it fast; the scores are cached per process."""
from __future__ import annotations

import re
import time
from pathlib import Path

import gradio as gr
import pytest

from convformer import FUSIONS
from convformer.export.checkpoint import bundled_checkpoint
from convformer.data.shapes import CLASSES, render
from convformer_app.compare import handlers as compare

import gradio_client  # noqa: E402
from gradio_client import Client, handle_file  # noqa: E402

pytestmark = pytest.mark.app

N = 30


@pytest.fixture(scope="module")
def client(server) -> Client:
    return Client(server.url, verbose=False)


def test_compare_split_has_a_sane_row_per_stage(client: Client) -> None:
    table, chart, note = client.predict(N, api_name="/compare_split")
    assert table["headers"] == compare.HEADERS
    rows = {r[0]: dict(zip(compare.HEADERS, r)) for r in table["data"]}
    assert list(rows) == list(FUSIONS)
    for fusion, row in rows.items():
        assert 0 <= row["accuracy (%)"] <= 100
        assert 0.01 < row["params (M)"] < 50 and row["MFLOPs"] > 1 and re.fullmatch(r"[\d.]+ \([\d.]+-[\d.]+\)( ⚠)?", row["latency (ms)"])
        bundled = bundled_checkpoint(fusion) is not None
        assert row["weights"] == ("bundled checkpoint" if bundled else "RANDOM (nothing bundled)")
        if bundled:  # the bundled checkpoints score > 90% on their own test split
            assert row["accuracy (%)"] > 60, row
    assert f"{N} fresh test images" in note
    bars = [dict(zip(chart["value"]["columns"], r)) for r in chart["value"]["data"]]
    scores = [b["accuracy (%)"] for b in bars]
    assert scores == sorted(scores, reverse=True) and chart["sort"] == [b["model"] for b in bars]  # ranked
    assert chart["y_lim"][0] <= min(scores) and chart["y_lim"][1] == 100  # the axis shows every bar
    assert chart["y_lim"][0] == max(0, int(min(scores)) - 2)  # zoomed: a few points apart can be seen


def test_compare_image_shows_every_stage(client: Client, tmp_path: Path) -> None:
    image = tmp_path / "heart.png"
    render(6, "test", 96)[0].save(image)
    out = client.predict(handle_file(str(image)), api_name="/compare_image")
    assert len(out) == 4 * len(FUSIONS)
    for i, fusion in enumerate(FUSIONS):
        title, label, overlay, channels = out[4 * i: 4 * i + 4]
        assert title.startswith(f"### {fusion}") and label["label"]
        assert ("random weights" in title) == (bundled_checkpoint(fusion) is None)
        if bundled_checkpoint(fusion):
            assert label["label"] in CLASSES
        assert overlay and Path(overlay).stat().st_size > 0
        assert (channels is None) == (fusion == "vit")


def test_split_scores_are_cached_and_bad_sizes_refused(client: Client) -> None:
    first = client.predict(N, api_name="/compare_split")[0]  # computed by the first test, or now
    start = time.perf_counter()
    again = client.predict(N, api_name="/compare_split")[0]
    assert time.perf_counter() - start < 2.0 and again["data"] == first["data"]
    with pytest.raises(gr.Error, match="from 10 to 2000"):
        compare.compare_split(5, progress=lambda *a, **k: None)
    with pytest.raises(gr.Error, match="Upload an image"):
        compare.compare_image(None)
