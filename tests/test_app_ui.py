"""The app's handlers (convformer_app) as plain functions: no server, no browser."""
from __future__ import annotations

import re

from pathlib import Path
from types import SimpleNamespace

import gradio as gr
import numpy as np
import pytest
import torch
from PIL import Image

import convformer as cf
from convformer.data.shapes import render
from convformer_app import views
from convformer_app.explore import handlers as explore
from convformer_app import engine, gradio_patches
from convformer_app.controls import HPARAMS, Controls
from convformer_app.engine import CACHE, ModelCache, Run
from convformer_app.weights import defaults, resolve

pytestmark = pytest.mark.app
SMALL = {"img_size": 64, "weights": "random"}


def run(image: str | None, fusion: str = "mid", **fields) -> Run:
    controls = Controls(fusion=fusion, **fields)
    return engine.run(image, controls, resolve(controls))


@pytest.fixture(scope="module")
def image(tmp_path_factory) -> str:
    path = tmp_path_factory.mktemp("ui") / "shape.png"
    render(0, "test", 80)[0].save(path)
    return str(path)


@pytest.fixture(scope="module")
def late_run(image: str) -> Run:
    return run(image, "late", **SMALL)


def test_predict_outputs_in_declared_order(image: str) -> None:
    out = dict(zip(explore.PREDICT_OUTPUTS, explore.predict(image, "mid", top_k=3, **SMALL)))
    assert len(out["label"]) == 3 and all(0 <= p <= 1 for p in out["label"].values())
    assert out["run"].classes == [f"class {i}" for i in range(10)] and out["point"] is None  # a kept Run
    assert out["table"]["data"][0][2] == "(B=1, C=3, H=64, W=64)" and out["table"]["data"][-1][0] == "total"
    assert all(isinstance(out[k], Image.Image) for k in ("rollout", "patch", "query", "blocks", "heads", "channels",
                                                          "cam"))


def test_model_built_once_per_config(image: str) -> None:
    run(image, "cnn", **SMALL)
    builds = CACHE.builds
    run(image, "cnn", **SMALL)
    assert CACHE.builds == builds
    run(image, "cnn", depth=2, **SMALL)  # depth does not matter to cnn, but the config differs
    assert CACHE.builds == builds + 1


def test_cache_is_bounded_lru() -> None:
    cache, built = ModelCache(size=2), []

    def build(key):
        return lambda: built.append(key) or key
    for key in ("a", "b", "a", "c", "a", "b"):
        cache.get((key,), build(key))
    assert built == ["a", "b", "c", "b"] and len(cache._items) == 2


def test_late_fusion_keeps_both_branches(late_run: Run) -> None:
    assert all(k.startswith("vit.") for k in late_run.attentions)
    assert all(k.startswith("cnn.") for k in late_run.channels) and list(late_run.cam) == ["cnn.conv.stage3"]
    assert "ViT branch" in explore.maps_note(late_run) and "CNN branch" in explore.maps_note(late_run)


def test_redraw_from_state_without_running(late_run: Run) -> None:
    builds = CACHE.builds
    mean = explore.redraw_attention(late_run, "mean", 0.0)
    sharp = explore.redraw_attention(late_run, "max", 0.9, "vit.blocks.0", "head 1", [1, 1])
    assert CACHE.builds == builds
    assert len(mean) == len(sharp) == 5
    assert not np.array_equal(np.asarray(mean[0]), np.asarray(sharp[0]))
    first, last = (np.asarray(explore.redraw_channels(late_run, f"cnn.conv.stage{i}")) for i in (0, 3))
    assert not np.array_equal(first, last)
    with pytest.raises(gr.Error):
        explore.redraw_attention(None)


def test_click_picks_the_patch_under_the_point(late_run: Run) -> None:
    w, h = late_run.display.size
    assert views.query_index(late_run, [0, 0]) == 0
    assert views.query_index(late_run, [w - 1, h - 1]) == late_run.grid[0] * late_run.grid[1] - 1
    point, patch, query = explore.click(late_run, None, None, SimpleNamespace(index=[w - 1, 0]))
    assert point == [w - 1, 0] and patch.size == query.size == (w, h)


ARGS = dict(fusion="mid", preset="convformer_mid_tiny", img_size=64, embed_dim=100, depth=4, num_heads=3,
            mlp_ratio=4.0, patch_size=16, conv_widths="32, 64", conv_depths="1, 1", merge="concat")


def test_impossible_configs_name_the_field() -> None:
    with pytest.raises(gr.Error, match="embed_dim=100 is not allowed"):
        Controls(**ARGS).config()
    assert "impossible" in explore.check_config(**ARGS, weights="random")
    for field, value in [("img_size", 64.5), ("conv_widths", "32, x"), ("conv_depths", ""), ("img_size", 5000),
                         ("depth", 10_000), ("fusion", "hybrid")]:
        bad = {**ARGS, "embed_dim": 96, field: value}
        assert field in explore.check_config(**bad, weights="random"), (field, value)


def test_bad_images_raise_clear_errors(tmp_path: Path) -> None:
    text = tmp_path / "notes.png"
    text.write_text("not an image")
    with pytest.raises(gr.Error, match="cannot be used") as info:
        run(str(text), "mid", **SMALL)
    assert str(tmp_path) not in info.value.message
    with pytest.raises(gr.Error, match="Upload an image"):
        run(None, "mid")
    with pytest.warns(UserWarning, match="cannot be used"):  # gr.Warning outside a request
        picture, status = explore.preview(str(text))
    assert picture is None and "cannot be used" in status


def test_an_image_is_decoded_once(image: str, monkeypatch) -> None:
    decoded = []
    monkeypatch.setattr(engine, "load_image", lambda path, **kw: decoded.append(path) or Image.open(path).convert("RGB"))
    engine._decoded.cache_clear()
    explore.preview(image)
    run(image, "cnn", **SMALL)
    assert decoded == [image]


def test_controls_travel_as_one_value() -> None:
    """Handlers take the controls as separate inputs (what the API lists) and build one Controls."""
    import inspect
    names = list(inspect.signature(explore.predict).parameters)
    assert names[:2] == ["image", "fusion"] and names[1:14] == list(Controls.names())
    assert Controls.from_inputs(*Controls(depth=6).inputs()) == Controls(depth=6)
    assert Controls.from_inputs("mid", "convformer_mid_tiny", 64.0).img_size == 64  # whole slider floats: ints
    seen = []
    explore.predict.__wrapped__  # noqa: B018 - the plain function is still reachable
    probe = explore.spread(lambda image, controls, top_k=5: seen.append((image, controls, top_k)))
    probe("x.png", "late", depth=2.0, top_k=3)
    assert seen == [("x.png", Controls(fusion="late", depth=2), 3)]


def test_query_link_roundtrip() -> None:
    controls = Controls("late", "convformer_late_tiny", 96, 64, 6, 4, 2.5, 8, "16, 32, 64", "1, 1, 1", "gate",
                        "random")
    query = explore.link(*controls.inputs())
    assert query.startswith("?fusion=late&") and "depth=6" in query and "mlp_ratio=2.5" in query
    from urllib.parse import parse_qsl
    back, notes = Controls.from_query(dict(parse_qsl(query[1:])), defaults)
    assert back == controls and notes == []
    junk, notes = Controls.from_query({"fusion": "x", "depth": "-1; rm", "merge": "glue", "conv_widths": "a,b",
                                       "zzz": "1"}, defaults)
    assert junk == Controls.from_query({"weights": "random"}, defaults)[0] and len(notes) == 4


def test_url_numbers_are_clamped_to_the_controls_ranges() -> None:
    controls, notes = Controls.from_query({"img_size": "99999", "mlp_ratio": "0.1", "depth": "7"}, defaults)
    assert (controls.img_size, controls.mlp_ratio, controls.depth) == (512, 0.5, 7)
    assert len(notes) == 2 and "img_size=99999 became 512" in notes[0]


def test_messages_carry_no_server_paths() -> None:
    assert views.clean(OSError("[Errno 2] No such file: '/tmp/gradio/abc/secret.png'")) == \
        "[Errno 2] No such file: 'secret.png'"

    @engine.guard
    def boom():
        raise RuntimeError("failed in /work/main/convformer/thing.py")
    with pytest.raises(gr.Error) as info:
        boom()
    assert "/work" not in info.value.message and "thing.py" in info.value.message


def test_weights_notice_says_what_the_weights_know() -> None:
    meta = {"classes": ["circle", "square"], "dataset": "shapes", "metrics": {"test_acc": 0.931, "val_acc": 0.94}}
    text = views.weights_notice("bundled", meta, "mid.safetensors")
    assert "Shapes" in text and "circle, square" in text and "93.1%" in text
    assert "meaningless" in views.weights_notice("random", {})
    assert "Upload" in resolve(Controls(weights="upload")).notice


@pytest.mark.parametrize("fusion", cf.FUSIONS)
def test_diagram_has_the_real_shapes(fusion: str) -> None:
    model = cf.create(f"convformer_{fusion}_tiny", num_classes=7, img_size=64)
    rows = cf.inspect(model, cf.preprocess(Image.new("RGB", (64, 64)), model), flops=False).shapes
    html = views.diagram_html(rows, fusion)
    assert "(B=1, C=3, H=64, W=64)" in html and "(B=1, classes=7)" in html
    assert ("transformer block" in html) == (fusion != "cnn")


def test_bundled_checkpoint_is_used_and_described(image: str, tmp_path: Path, monkeypatch) -> None:
    from convformer.export import checkpoint
    from convformer.data.shapes import CLASSES
    monkeypatch.setattr(checkpoint, "BUNDLED", tmp_path)
    model = cf.create("convformer_mid_tiny", num_classes=len(CLASSES), img_size=64, embed_dim=32, depth=1,
                      num_heads=2, conv_widths=(8, 16, 24), conv_depths=(0, 1, 0))
    cf.save_checkpoint(model, tmp_path / "mid.safetensors", classes=list(CLASSES), dataset="shapes",
                       metrics={"test_acc": 0.875, "val_acc": 0.9})
    assert defaults("mid").conv_widths == "8, 16, 24" and defaults("late").embed_dim == 192
    bad = dict(fusion="mid", img_size=999, embed_dim=100, conv_widths="x", conv_depths="", merge="add")
    assert "bundled" in explore.check_config(**bad)
    out = dict(zip(explore.PREDICT_OUTPUTS, explore.predict(image, "mid", embed_dim=100)))  # the checkpoint fixes it
    assert "bundled checkpoint" in out["notice"] and "Shapes" in out["notice"] and "87.5%" in out["notice"]
    assert set(out["label"]) <= set(CLASSES) and out["table"]["data"][0][2] == "(B=1, C=3, H=64, W=64)"
    assert "meaningless" in resolve(Controls(weights="random")).notice
    shown = dict(zip(explore.CONTROL_OUTPUTS, explore.on_weights("mid", weights="bundled")))
    assert shown["depth"] == 1 and "Shapes" in shown["notice"]


def test_uploaded_checkpoint_sets_its_architecture(image: str, tmp_path: Path) -> None:
    model = cf.create("convformer_late_tiny", num_classes=4, img_size=64, embed_dim=48, depth=1, num_heads=2,
                      conv_widths=(8, 16), conv_depths=(1, 0), patch_size=8, merge="gate")
    path = str(cf.save_checkpoint(model, tmp_path / "late.safetensors", classes=list("abcd"), dataset="unit"))
    shown = dict(zip(explore.CONTROL_OUTPUTS, explore.on_weights("mid", weights="upload", checkpoint=path)))
    assert shown["fusion"] == "late" and shown["conv_widths"] == "8, 16" and "unit" in shown["notice"]
    values = {k: shown[k] for k in HPARAMS}
    out = explore.predict(image, "late", "convformer_late_tiny", **values, weights="upload", checkpoint=path)
    assert set(out[0]) <= set("abcd") and "your checkpoint" in out[1]
    unreadable = dict(zip(explore.CONTROL_OUTPUTS, explore.on_weights("mid", weights="upload", checkpoint=__file__)))
    assert unreadable["fusion"] == "mid" and "safetensors" in unreadable["notice"]  # nothing else changes


def test_concurrent_requests_on_one_model_do_not_mix(image: str) -> None:
    from concurrent.futures import ThreadPoolExecutor
    with ThreadPoolExecutor(3) as pool:
        runs = list(pool.map(lambda _: run(image, "vit", depth=2, **SMALL), range(3)))
    for r in runs:
        assert list(r.attentions) == ["vit.blocks.0", "vit.blocks.1"]
        assert np.allclose(r.probs, runs[0].probs, atol=1e-5)


def test_attention_maps_beyond_the_budget_are_refused_before_building() -> None:
    builds = CACHE.builds
    huge = Controls("vit", "convformer_vit_tiny", 512, 256, 24, 16, 4, 8, "32", "1", "concat", "random")
    with pytest.raises(gr.Error, match="attention maps"):  # 4096 tokens x 16 heads x 24 blocks
        engine.model_config(huge, resolve(huge))
    assert CACHE.builds == builds
    fine = huge.replace(img_size=224, embed_dim=192, depth=12, num_heads=3, patch_size=16)
    assert engine.model_config(fine, resolve(fine)).depth == 12


def test_changing_fusion_with_trained_weights(tmp_path):
    model = cf.build_model(fusion="mid", img_size=32, conv_widths=(8, 8), conv_depths=(0, 0), embed_dim=16,
                           depth=1, num_heads=2, num_classes=3)
    path = str(cf.save_checkpoint(model, tmp_path / "best.safetensors", classes=["a", "b", "c"], dataset="unit"))
    kept = dict(zip(explore.CONTROL_OUTPUTS, explore.on_fusion("mid", weights="trained", trained=path)))
    assert kept["weights"] == "trained" and "trained in this session" in kept["notice"]
    other = dict(zip(explore.CONTROL_OUTPUTS, explore.on_fusion("late", weights="trained", trained=path)))
    assert other["weights"] == "random" and other["fusion"] == "late"  # the trained model is mid: said, not ignored
    assert "Nothing has been trained" in explore.on_fusion("late", weights="trained")[-1]


def test_warm_up_caches_the_default_model_and_never_raises(monkeypatch, caplog) -> None:
    CACHE.clear()
    builds = CACHE.builds
    explore.warm_up().join(60)
    assert CACHE.builds == builds + 1  # the default (mid, bundled) model is ready for the first visitor
    explore.predict(str(explore.examples()[0]), "mid")
    assert CACHE.builds == builds + 1  # ... and the first request reuses it

    monkeypatch.setattr(explore, "examples", lambda: [])  # nothing to warm up with: logged, not raised
    explore.warm_up().join(60)
    assert "warm-up failed" in caplog.text


def test_handlers_run_on_one_model_thread() -> None:
    """torch's OpenMP threads belong to the calling thread: every guarded handler, from whichever of
    Gradio's worker threads, runs on the same model thread (and nested calls do not deadlock)."""
    import threading
    from concurrent.futures import ThreadPoolExecutor

    where = engine.guard(lambda: (threading.current_thread().name, engine.guard(threading.get_ident)()))
    with ThreadPoolExecutor(4) as pool:
        seen = set(pool.map(lambda _: where(), range(8)))
    assert len(seen) == 1
    (name, ident), = seen
    assert name.startswith("convformer-model") and ident != threading.get_ident()
    with pytest.raises(gr.Error, match="ZeroDivisionError"):  # failures still come back as a short message
        engine.guard(lambda: 1 / 0)()
    redraw = engine.handled(lambda: threading.current_thread().name)  # redraws need no model: not queued
    assert not redraw().startswith("convformer-model")


def test_start_picks_the_device_and_makes_the_picture_cache_atomic() -> None:
    import gradio.processing_utils as pu
    assert engine.start("cpu").type == "cpu" and engine.DEVICE.type == "cpu"
    assert pu.save_pil_to_cache is gradio_patches.save_pil_to_cache
    with pytest.raises(ValueError, match="not a device name"):
        engine.start("warp-drive")


def test_a_failed_run_clears_the_previous_results() -> None:
    cleared = dict(zip(explore.PREDICT_OUTPUTS, explore.cleared()))
    for name in ("label", "stats", "rollout", "cam", "table", "diagram", "run", "cam_note"):
        assert cleared[name] is None, name
    assert cleared["notice"] == gr.skip()  # what the weights are stays said


def test_latency_is_timed_per_request_after_a_warm_up() -> None:
    model = cf.create("convformer_mid_tiny", num_classes=3, img_size=32, embed_dim=16, depth=1, num_heads=2,
                      conv_widths=(8, 8), conv_depths=(0, 0)).eval()
    calls = []
    model.register_forward_hook(lambda *_: calls.append(1))
    x = torch.rand(1, 3, 32, 32)
    for request in range(2):  # nothing is remembered between requests
        calls.clear()
        _, t = engine._compute(model, x, None)
        assert 0 < t.low <= t.median <= t.high and 3 <= t.runs <= engine.LATENCY_RUNS
        assert len(calls) == 1 + 1 + t.runs  # inspection, warm-up, timed runs


def test_parameters_are_counted_exactly_before_building() -> None:
    controls = Controls(fusion="late", weights="random", img_size=64)
    real = sum(p.numel() for p in cf.ConvFormer(controls.config()).parameters())
    assert engine.param_count(controls.config()) == real
    assert f"{views.human(real)} parameters" in explore.check_config(*controls.inputs())


def test_grad_cam_at_the_chosen_layer_says_why_maps_differ(image: str) -> None:
    out = dict(zip(explore.PREDICT_OUTPUTS, explore.predict(image, "mid", **SMALL)))
    layers = out["cam_layer"]["choices"]
    assert layers[-2:] == ["mid.conv.stage3", "mid.refine"]
    # the measured rule: mid's conv stages feed attention, so its first stage (benchmarks/gradcam_layers.py)
    assert out["cam_layer"]["value"] == "mid.conv.stage0" and "**before** the transformer" in out["cam_note"]
    lines = [line for line in out["cam_note"].splitlines() if line.startswith("- ")]
    assert [re.search(r"`([^`]+)`", line)[1] for line in lines] == layers  # one line per layer, each with why
    assert lines[0].startswith("- ▶") and "(32 x 32)" in lines[0] and "background" in lines[-1]
    after = dict(zip(explore.PREDICT_OUTPUTS, explore.predict(image, "mid", cam_layer="mid.refine", **SMALL)))
    assert after["cam_layer"]["value"] == "mid.refine" and "**after** the transformer" in after["cam_note"]
    assert not np.array_equal(np.asarray(out["cam"]), np.asarray(after["cam"]))


def test_a_blank_grad_cam_map_says_why(late_run: Run) -> None:
    blank = SimpleNamespace(**{**vars(late_run), "cam": {k: np.zeros_like(v) for k, v in late_run.cam.items()}})
    assert "The map is blank" in views.cam_note(blank) and "The map is blank" not in views.cam_note(late_run)


def test_bundled_weights_show_their_preset_and_another_preset_says_what_happens() -> None:
    assert defaults("mid").preset == "convformer_mid_shapes"  # what the bundled checkpoint is
    start = defaults("mid")
    shown = dict(zip(explore.CONTROL_OUTPUTS, explore.on_preset(*start.replace(preset="convformer_mid_small").inputs())))
    assert (shown["weights"], shown["preset"], shown["depth"]) == ("random", "convformer_mid_small", 6)
    same = dict(zip(explore.CONTROL_OUTPUTS, explore.on_preset(*start.inputs())))
    assert same["weights"] == "bundled" and same["preset"] == "convformer_mid_shapes"


def test_explore_starts_with_a_captioned_shape() -> None:
    assert Path(explore.first_example()).name.startswith("shapes_")
    captions = dict(explore.gallery())
    assert all(c.endswith("(photo)") for p, c in captions.items() if Path(p).name.startswith("photo_"))
    assert captions[str(engine.EXAMPLES / "shapes_star.png")] == "star"


def test_compare_chart_is_ranked_on_an_axis_that_shows_small_differences() -> None:
    import pandas as pd

    from convformer_app.compare import handlers as compare
    table = pd.DataFrame([["early", "b", 95.1, 1, 1, 1], ["mid", "b", 98.0, 1, 1, 1], ["vit", "b", 93.4, 1, 1, 1]],
                         columns=compare.HEADERS)
    chart = compare.chart(table)
    assert chart["sort"] == ["mid", "early", "vit"] and chart["y_lim"] == [91, 100]


def test_a_new_knob_flows_through_from_its_spec(monkeypatch) -> None:
    """Adding an Explore hyperparameter is two edits: a Knob in controls.KNOBS and its label in the catalogue.
    A copy of controls.py with one more Knob (and the label added): the Controls field, the config, the URL
    (clamped), what a checkpoint fixes and the page's slider all follow."""
    import importlib.util
    import sys
    import convformer_app.controls as controls_module
    from convformer_app import i18n
    from convformer_app.explore import page
    source = Path(controls_module.__file__).read_text()
    last = '    Knob("merge", "choice", "concat", choices=tuple(MERGES)),\n'
    assert source.count(last) == 1
    source = source.replace(last, last + '    Knob("drop_path_rate", "float", 0.0, (0, 0.5, 0.05)),\n')  # edit 1
    spec = importlib.util.spec_from_loader("convformer_app.controls_probe", loader=None)
    probe = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, spec.name, probe)  # dataclasses look their module up
    exec(compile(source, "controls_probe.py", "exec"), probe.__dict__)
    with pytest.raises(KeyError, match="ctl.drop_path_rate"):
        i18n.tr("ctl.drop_path_rate")  # without its label the page cannot name it
    monkeypatch.setitem(i18n.TEXT, "ctl.drop_path_rate", ("Stochastic depth", "随机深度"))  # edit 2

    C = probe.Controls
    assert C.names()[-3:] == ("drop_path_rate", "weights", "checkpoint")  # after the knobs: positional calls hold
    assert C(drop_path_rate=0.2).config().drop_path_rate == 0.2
    assert probe.hparams(C(drop_path_rate=0.1).config())["drop_path_rate"] == 0.1  # a checkpoint fixes it
    assert "drop_path_rate=0.3" in C(drop_path_rate=0.3).query()
    start = lambda fusion, preset, weights: C(fusion=fusion, weights=weights)  # noqa: E731
    back, notes = C.from_query({"drop_path_rate": "0.9"}, start)
    assert back.drop_path_rate == 0.5 and "drop_path_rate=0.9 became 0.5" in notes[0]
    with pytest.raises(gr.Error, match="drop_path_rate"):
        C(drop_path_rate="lots").config()
    monkeypatch.setattr(page, "KNOBS", probe.KNOBS)
    monkeypatch.setattr(page, "RANGES", probe.RANGES)
    monkeypatch.setattr(page, "D", C())
    with gr.Blocks():
        made = page.knob_components()
    assert set(made) == set(probe.KNOB)
    slider = made["drop_path_rate"]
    assert isinstance(slider, gr.Slider) and (slider.minimum, slider.maximum, slider.step) == (0, 0.5, 0.05)
