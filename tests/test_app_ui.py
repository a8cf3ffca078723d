"""The app's handlers (convformer.ui) as plain functions: no server, no browser."""
from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import gradio as gr
import numpy as np
import pytest
from PIL import Image

import convformer as cf
from convformer import ui, ui_views
from convformer.shapes import render
from convformer.ui_model import ModelCache, _clean, make_config

SMALL = {"img_size": 64, "weights": "random"}


@pytest.fixture(scope="module")
def image(tmp_path_factory) -> str:
    path = tmp_path_factory.mktemp("ui") / "shape.png"
    render(0, "test", 80)[0].save(path)
    return str(path)


@pytest.fixture(scope="module")
def late_run(image: str) -> ui.Run:
    return ui.run(image, "late", **SMALL)


def test_predict_outputs_in_declared_order(image: str) -> None:
    out = dict(zip(ui.PREDICT_OUTPUTS, ui.predict(image, "mid", top_k=3, **SMALL)))
    assert len(out["label"]) == 3 and all(0 <= p <= 1 for p in out["label"].values())
    assert isinstance(out["run"], ui.Run) and out["point"] is None
    assert out["table"][0][2] == "(1, 3, 64, 64)" and out["table"][-1][0] == "total"
    assert all(isinstance(out[k], Image.Image) for k in ("rollout", "patch", "query", "blocks", "heads", "channels",
                                                          "cam"))


def test_model_built_once_per_config(image: str) -> None:
    ui.run(image, "cnn", **SMALL)
    builds = ui.CACHE.builds
    ui.run(image, "cnn", **SMALL)
    assert ui.CACHE.builds == builds
    ui.run(image, "cnn", depth=2, **SMALL)  # depth does not matter to cnn, but the config differs
    assert ui.CACHE.builds == builds + 1


def test_cache_is_bounded_lru() -> None:
    cache, built = ModelCache(size=2), []

    def build(key):
        return lambda: built.append(key) or key
    for key in ("a", "b", "a", "c", "a", "b"):
        cache.get((key,), build(key))
    assert built == ["a", "b", "c", "b"] and len(cache._items) == 2


def test_late_fusion_keeps_both_branches(late_run: ui.Run) -> None:
    assert all(k.startswith("vit.") for k in late_run.attentions)
    assert all(k.startswith("cnn.") for k in late_run.channels) and list(late_run.cam) == ["cnn.conv.stage3"]
    assert "ViT branch" in ui.maps_note(late_run) and "CNN branch" in ui.maps_note(late_run)


def test_redraw_from_state_without_running(late_run: ui.Run) -> None:
    builds = ui.CACHE.builds
    mean = ui.redraw_attention(late_run, "mean", 0.0)
    sharp = ui.redraw_attention(late_run, "max", 0.9, "vit.blocks.0", "head 1", [1, 1])
    assert ui.CACHE.builds == builds
    assert len(mean) == len(sharp) == 5
    assert not np.array_equal(np.asarray(mean[0]), np.asarray(sharp[0]))
    first, last = (np.asarray(ui.redraw_channels(late_run, f"cnn.conv.stage{i}")) for i in (0, 3))
    assert not np.array_equal(first, last)
    with pytest.raises(gr.Error):
        ui.redraw_attention(None)


def test_click_picks_the_patch_under_the_point(late_run: ui.Run) -> None:
    w, h = late_run.display.size
    assert ui_views.query_index(late_run, [0, 0]) == 0
    assert ui_views.query_index(late_run, [w - 1, h - 1]) == late_run.grid[0] * late_run.grid[1] - 1
    point, patch, query = ui.click(late_run, None, None, SimpleNamespace(index=[w - 1, 0]))
    assert point == [w - 1, 0] and patch.size == query.size == (w, h)


def test_impossible_configs_name_the_field() -> None:
    args = ["mid", "convformer_mid_tiny", 64, 100, 4, 3, 4.0, 16, "32, 64", "1, 1", "concat"]
    with pytest.raises(gr.Error, match="embed_dim=100 is not allowed"):
        make_config(*args)
    assert "impossible" in ui.check_config(*args, "random")
    for index, value, field in [(2, 64.5, "img_size"), (8, "32, x", "conv_widths"), (9, "", "conv_depths"),
                                (2, 5000, "img_size"), (4, 10_000, "depth"), (0, "hybrid", "fusion")]:
        bad = list(args)
        bad[3] = 96
        bad[index] = value
        assert f"{field}" in ui.check_config(*bad, "random"), (field, value)


def test_bad_images_raise_clear_errors(tmp_path: Path) -> None:
    text = tmp_path / "notes.png"
    text.write_text("not an image")
    with pytest.raises(gr.Error, match="cannot be used") as info:
        ui.run(str(text), "mid", **SMALL)
    assert str(tmp_path) not in info.value.message
    with pytest.raises(gr.Error, match="Upload an image"):
        ui.run(None, "mid")
    with pytest.warns(UserWarning, match="cannot be used"):  # gr.Warning outside a request
        picture, status = ui.preview(str(text))
    assert picture is None and "cannot be used" in status


def test_query_link_roundtrip() -> None:
    values = ["late", "convformer_late_tiny", 96.0, 64, 6, 4, 2.5, 8, "16, 32, 64", "1, 1, 1", "gate", "random"]
    query = ui.link(*values)
    assert query.startswith("?fusion=late&") and "depth=6" in query and "mlp_ratio=2.5" in query
    from urllib.parse import parse_qsl
    back = ui.from_query(dict(parse_qsl(query[1:])))
    assert back["fusion"] == "late" and back["depth"] == 6 and back["embed_dim"] == 64 and back["merge"] == "gate"
    assert back["conv_widths"] == "16, 32, 64" and back["mlp_ratio"] == 2.5 and back["weights"] == "random"
    junk = ui.from_query({"fusion": "x", "depth": "-1; rm", "merge": "glue", "conv_widths": "a,b", "zzz": "1"})
    assert junk["fusion"] == "mid" and junk == ui.from_query({"weights": "random"})


def test_messages_carry_no_server_paths() -> None:
    assert _clean(OSError("[Errno 2] No such file: '/tmp/gradio/abc/secret.png'")) == \
        "[Errno 2] No such file: 'secret.png'"

    @ui.guard
    def boom():
        raise RuntimeError("failed in /work/main/convformer/thing.py")
    with pytest.raises(gr.Error) as info:
        boom()
    assert "/work" not in info.value.message and "thing.py" in info.value.message


def test_weights_notice_says_what_the_weights_know() -> None:
    meta = {"classes": ["circle", "square"], "dataset": "shapes", "metrics": {"test_acc": 0.931, "val_acc": 0.94}}
    text = ui_views.weights_notice("bundled", meta, "mid.safetensors")
    assert "Shapes" in text and "circle, square" in text and "93.1%" in text
    assert "meaningless" in ui_views.weights_notice("random", {})
    assert "Upload" in ui.notice("mid", "upload", None)


@pytest.mark.parametrize("fusion", cf.FUSIONS)
def test_diagram_has_the_real_shapes(fusion: str) -> None:
    model = cf.create(f"convformer_{fusion}_tiny", num_classes=7, img_size=64)
    rows = cf.inspect(model, cf.preprocess(Image.new("RGB", (64, 64)), model), flops=False).shapes
    html = ui_views.diagram_html(rows, fusion)
    assert "(1, 3, 64, 64)" in html and "(1, 7)" in html
    assert ("transformer block" in html) == (fusion != "cnn")


def test_bundled_checkpoint_is_used_and_described(image: str, tmp_path: Path, monkeypatch) -> None:
    from convformer import checkpoint
    from convformer.shapes import CLASSES
    monkeypatch.setattr(checkpoint, "BUNDLED", tmp_path)
    model = cf.create("convformer_mid_tiny", num_classes=len(CLASSES), img_size=64, embed_dim=32, depth=1,
                      num_heads=2, conv_widths=(8, 16, 24), conv_depths=(0, 1, 0))
    cf.save_checkpoint(model, tmp_path / "mid.safetensors", classes=list(CLASSES), dataset="shapes",
                       metrics={"test_acc": 0.875, "val_acc": 0.9})
    assert ui.defaults("mid")["conv_widths"] == "8, 16, 24" and ui.defaults("late")["embed_dim"] == 192
    assert "bundled" in ui.check_config("mid", "convformer_mid_tiny", 999, 100, 4, 3, 4, 16, "x", "", "add")
    out = dict(zip(ui.PREDICT_OUTPUTS, ui.predict(image, "mid", embed_dim=100)))  # the checkpoint fixes it
    assert "bundled checkpoint" in out["notice"] and "Shapes" in out["notice"] and "87.5%" in out["notice"]
    assert set(out["label"]) <= set(CLASSES) and out["table"][0][2] == "(1, 3, 64, 64)"
    assert "meaningless" in ui.notice("mid", "random")
    hparams = ui.on_weights("mid", "bundled")
    assert hparams[ui.HPARAMS.index("depth")] == 1 and "Shapes" in hparams[-2]


def test_uploaded_checkpoint_sets_its_architecture(image: str, tmp_path: Path) -> None:
    model = cf.create("convformer_late_tiny", num_classes=4, img_size=64, embed_dim=48, depth=1, num_heads=2,
                      conv_widths=(8, 16), conv_depths=(1, 0), patch_size=8, merge="gate")
    path = str(cf.save_checkpoint(model, tmp_path / "late.safetensors", classes=list("abcd"), dataset="unit"))
    fusion, *values = ui.checkpoint_controls(path)
    assert fusion == "late" and dict(zip(ui.HPARAMS, values))["conv_widths"] == "8, 16"
    out = ui.predict(image, fusion, "convformer_late_tiny", *values, weights="upload", checkpoint=path)
    assert set(out[0]) <= set("abcd") and "your checkpoint" in out[1]
    assert ui.checkpoint_controls(None) == ui.checkpoint_controls(__file__)  # nothing changes


def test_concurrent_requests_on_one_model_do_not_mix(image: str) -> None:
    from concurrent.futures import ThreadPoolExecutor
    with ThreadPoolExecutor(3) as pool:
        runs = list(pool.map(lambda _: ui.run(image, "vit", depth=2, **SMALL), range(3)))
    for r in runs:
        assert list(r.attentions) == ["vit.blocks.0", "vit.blocks.1"]
        assert np.allclose(r.probs, runs[0].probs, atol=1e-5)


def test_attention_maps_beyond_the_budget_are_refused_before_building() -> None:
    builds = ui.CACHE.builds
    with pytest.raises(gr.Error, match="attention maps"):  # 4096 tokens x 16 heads x 24 blocks
        make_config("vit", "convformer_vit_tiny", 512, 256, 24, 16, 4, 8, "32", "1", "concat")
    assert ui.CACHE.builds == builds
    assert make_config("vit", "convformer_vit_tiny", 224, 192, 12, 3, 4, 16, "32", "1", "concat").depth == 12


def test_changing_fusion_keeps_the_trained_notice(tmp_path):
    model = cf.build_model(fusion="mid", img_size=32, conv_widths=(8, 8), conv_depths=(0, 0), embed_dim=16,
                           depth=1, num_heads=2, num_classes=3)
    path = cf.save_checkpoint(model, tmp_path / "best.safetensors", classes=["a", "b", "c"], dataset="unit")
    for outputs in (ui.on_fusion("late", "trained", None, str(path)),
                    ui.on_preset("convformer_cnn_tiny", "trained", None, str(path))):
        assert "Nothing trained" not in outputs[-1]
    assert "Nothing trained" in ui.on_fusion("late", "trained", None, None)[-1]


def test_warm_up_caches_the_default_model_and_never_raises(monkeypatch, caplog) -> None:
    ui.CACHE.clear()
    builds = ui.CACHE.builds
    ui.warm_up().join(60)
    assert ui.CACHE.builds == builds + 1  # the default (mid, bundled) model is ready for the first visitor
    ui.predict(str(ui.examples()[0]), "mid")
    assert ui.CACHE.builds == builds + 1  # ... and the first request reuses it

    monkeypatch.setattr(ui, "examples", lambda: [])  # nothing to warm up with: logged, not raised
    ui.warm_up().join(60)
    assert "warm-up failed" in caplog.text


def test_handlers_run_on_one_model_thread() -> None:
    """torch's OpenMP threads belong to the calling thread: every guarded handler, from whichever of
    Gradio's worker threads, runs on the same model thread (and nested calls do not deadlock)."""
    import threading
    from concurrent.futures import ThreadPoolExecutor

    where = ui.guard(lambda: (threading.current_thread().name, ui.guard(threading.get_ident)()))
    with ThreadPoolExecutor(4) as pool:
        seen = set(pool.map(lambda _: where(), range(8)))
    assert len(seen) == 1
    (name, ident), = seen
    assert name.startswith("convformer-model") and ident != threading.get_ident()
    with pytest.raises(gr.Error, match="ZeroDivisionError"):  # failures still come back as a short message
        ui.guard(lambda: 1 / 0)()
