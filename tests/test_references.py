"""The ImageNet references, offline: each architecture with random weights in a Hugging Face cache made here
(tests/_fake_hub.py), loaded through timm's pretrained path with HF_HUB_OFFLINE=1, then predicted on and
inspected like our own models; the unreachable Hub says so in one line, fast.

Not run here (no Hub on the development machines): the first real download of the published weights.
"""
from __future__ import annotations

import socket
import time
from pathlib import Path

import numpy as np
import pytest
import timm
import torch
from PIL import Image
from safetensors.torch import load_file

from convformer import inspect
from convformer.inspection import viz
from convformer.__main__ import main
from convformer.references import (REFERENCES, WeightsUnavailable, cached_weights, download_size, fetch,
                                   imagenet_labels, is_cached, load_reference, params, preprocess, top_k, view)

from . import _fake_hub

ROOT = Path(__file__).resolve().parents[1]
CAT = ROOT / "assets" / "examples" / "photo_chelsea_cat.jpg"
FUSIONS = list(REFERENCES)


@pytest.fixture(scope="module")
def hub() -> Path:
    return _fake_hub.cache()


@pytest.fixture
def offline(monkeypatch, hub) -> Path:
    _fake_hub.offline(monkeypatch, hub)
    return hub


@pytest.fixture(scope="module")
def models(hub) -> dict[str, torch.nn.Module]:
    with pytest.MonkeyPatch.context() as mp:
        _fake_hub.offline(mp, hub)
        return {f: load_reference(f) for f in FUSIONS}


@pytest.fixture(scope="module")
def photo() -> Image.Image:
    return Image.open(CAT).convert("RGB")


def test_one_published_model_per_stage_with_its_tag():
    assert set(REFERENCES) == {"early", "mid", "late", "cnn", "vit"}
    for ref in REFERENCES.values():
        for name in ref.names:
            arch, tag = name.split(".", 1)
            assert tag and arch in timm.list_models(pretrained=False)
            assert timm.models.get_pretrained_cfg(name).hf_hub_id == f"timm/{name}"
    assert REFERENCES["late"].names == REFERENCES["cnn"].names + REFERENCES["vit"].names


def test_pretrained_path_reads_the_cache_offline(offline):
    """Plain timm, no convformer in between: the fake cache is where timm's pretrained path looks."""
    for name in _fake_hub.names():
        path = cached_weights(name)
        assert path and path.startswith(str(offline))
        model = timm.create_model(name, pretrained=True)
        saved = load_file(path)
        got = model.state_dict()
        assert all(torch.equal(got[k], v) for k, v in saved.items())


@pytest.mark.parametrize("fusion", FUSIONS)
def test_load_reference_gives_the_cached_weights(models, hub, fusion):
    model = models[fusion]
    assert model.reference is REFERENCES[fusion] and not model.training
    assert sum(p.numel() for p in model.parameters()) == params(fusion)
    members = [model] if fusion != "late" else [model.cnn, model.vit]
    for member, name in zip(members, REFERENCES[fusion].names):
        saved = load_file(cached_weights(name, cache_dir=str(hub)))
        state = member.state_dict()
        assert all(torch.equal(state[k], v) for k, v in saved.items())


def test_late_fusion_averages_the_members_probabilities(models, photo):
    late = models["late"]
    x = preprocess(photo, late)
    with torch.inference_mode():
        expected = (late.cnn(x).softmax(-1) + late.vit(x).softmax(-1)) / 2
        got = late(x).softmax(-1)
    torch.testing.assert_close(got, expected, atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize("fusion", FUSIONS)
def test_preprocessing_comes_from_the_data_config(models, fusion):
    model = models[fusion]
    cfg = timm.data.resolve_data_config(model=model)
    wide = Image.new("RGB", (300, 200), (255, 0, 0))
    x = preprocess(wide, model)
    assert x.shape == (1, *cfg["input_size"])
    red = (1 - cfg["mean"][0]) / cfg["std"][0]  # pure red, normalised with the model's own mean / std
    assert x[0, 0].mean().item() == pytest.approx(red, abs=1e-4)
    assert view(wide, model).size == cfg["input_size"][:0:-1]


def test_labels_are_timms_imagenet_names():
    labels = imagenet_labels()
    assert len(labels) == 1000 and "tabby" in labels[281] and len(set(labels)) > 990
    probs = torch.zeros(1000)
    probs[281], probs[285] = 0.7, 0.2
    assert [lab for lab, _ in top_k(probs, 2)] == [labels[281], labels[285]]


@pytest.mark.parametrize("fusion", FUSIONS)
def test_inspection_like_our_models(models, photo, fusion):
    model = models[fusion]
    x = preprocess(photo, model)
    flags = [(m, m.fused_attn) for m in model.modules() if hasattr(m, "fused_attn")]
    r = inspect(model, x, cam_class="pred")
    assert [(m.fused_attn, m.training) for m, _ in flags] == [(f, False) for _, f in flags]  # restored
    with torch.inference_mode():
        torch.testing.assert_close(r.logits, model(x), atol=1e-4, rtol=1e-4)  # explicit == fused attention
    assert r.shapes[0].output_shape == (1, 3, 224, 224) and r.shapes[-1].output_shape == (1, 1000)
    assert r.params == sum(p.numel() for p in model.parameters()) and r.flops > 1e8
    for block, attn in r.attentions.items():
        grid = r.grid_of(block)
        assert attn.shape[-1] == attn.shape[-2] == grid.prefix + grid.h * grid.w
        torch.testing.assert_close(attn.sum(-1), torch.ones(attn.shape[:-1]))
    for act in r.activations.values():
        assert act.ndim == 4 and not act.requires_grad
    for cam in r.cam.values():
        assert cam.shape[0] == 1 and 0 <= cam.min() and cam.max() <= 1
    expected = {"early": (True, True), "mid": (True, True), "late": (True, True), "cnn": (False, True),
                "vit": (True, False)}[fusion]
    assert (bool(r.attentions), bool(r.cam)) == expected
    if r.attentions:  # rollout, per-head and click-a-patch maps on the block's own grid
        blocks = r.rollout_blocks()
        grid = r.grid_of(blocks[-1])
        heat = viz.rollout_map([r.attentions[b][0] for b in blocks], (grid.h, grid.w), grid.prefix)
        assert heat.shape == (grid.h, grid.w) and np.isfinite(heat).all()
        q = viz.point_to_query(10, 10, (224, 224), (grid.h, grid.w))
        assert viz.query_map(r.attentions[blocks[-1]][0], q, (grid.h, grid.w), grid.prefix).shape == (grid.h, grid.w)


def test_stage_grids_are_said_and_rollout_stays_on_one_grid(models, photo):
    r = inspect(models["mid"], preprocess(photo, models["mid"]))
    grids = {k: (g.h, g.w, g.prefix) for k, g in r.token_grid.items()}
    assert grids == {"stages.2": (14, 14, 0), "stages.3": (7, 7, 0)}
    assert r.rollout_blocks() == [b for b in r.attentions if b.startswith("stages.3.")]
    assert any("own grid" in n for n in r.notes)
    vit = inspect(models["vit"], preprocess(photo, models["vit"]))
    assert {k: (g.h, g.w, g.prefix) for k, g in vit.token_grid.items()} == {"blocks": (14, 14, 1)} and not vit.notes
    early = inspect(models["early"], preprocess(photo, models["early"]))
    assert {k: (g.h, g.w, g.prefix) for k, g in early.token_grid.items()} == {"blocks": (7, 7, 1)}
    assert [row.name for row in early.shapes[1:4]] == ["patch_embed.backbone", "patch_embed.proj", "tokens"]


def test_not_cached_and_offline_is_one_line_at_once(monkeypatch, tmp_path):
    from huggingface_hub import constants
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    assert not is_cached("vit")
    for attempt in (load_reference, fetch):
        with pytest.raises(WeightsUnavailable, match="HF_HUB_OFFLINE") as e:
            attempt("vit")
        assert "\n" not in str(e.value)


def test_fetch_of_cached_weights_downloads_nothing(offline):
    said = []
    for fusion in FUSIONS:
        fetch(fusion, on_download=lambda *a: said.append(a))  # offline: any download would raise
        assert is_cached(fusion)
    assert said == []


def test_unreachable_hub_is_one_line_within_the_timeout(monkeypatch, tmp_path):
    """A Hub that accepts the connection and never answers (the slow kind of unreachable): one request, one
    short timeout, no retries."""
    from huggingface_hub import constants
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        start = time.perf_counter()
        with pytest.raises(WeightsUnavailable, match="unreachable") as e:
            download_size("deit_tiny_patch16_224.fb_in1k", timeout=0.5,
                          endpoint=f"http://127.0.0.1:{silent.getsockname()[1]}")
        assert time.perf_counter() - start < 5
    assert "\n" not in str(e.value) and "not in the cache" in str(e.value)


def test_cli_predict_prints_top5_imagenet_labels(offline, capsys):
    assert main(["predict", str(CAT), "--fusion", "late", "--weights", "imagenet"]) == 0  # two members
    lines = capsys.readouterr().out.splitlines()
    labels = set(imagenet_labels())
    assert len(lines) == 5 and all(line.split("%", 1)[1].strip() in labels for line in lines)
    probs = [float(line.split("%")[0]) for line in lines]
    assert probs == sorted(probs, reverse=True)


def test_cli_references_lists_every_stage(offline, capsys):
    assert main(["references"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in lines] == FUSIONS
    for line, ref in zip(lines, REFERENCES.values()):
        assert ref.label in line and f"{params(ref.fusion) / 1e6:.2f} M params" in line and "(cached)" in line


def test_cli_unreachable_hub_exits_nonzero_with_one_line(monkeypatch, tmp_path, capsys):
    """As `python -m convformer predict ... --weights imagenet` with the Hub unreachable (connection refused)
    and nothing cached: sys.exit with one line, which Python prints to stderr with exit status 1."""
    from huggingface_hub import constants
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(constants, "HUGGINGFACE_CO_URL_TEMPLATE",
                        "http://127.0.0.1:9/{repo_id}/resolve/{revision}/{filename}")
    with pytest.raises(SystemExit) as e:
        main(["predict", str(CAT), "--fusion", "vit", "--weights", "imagenet"])
    message = e.value.code
    assert isinstance(message, str) and message.startswith("error: cannot download") and "\n" not in message
    assert "unreachable" in message and capsys.readouterr().out == ""


def test_benchmark_rows_for_the_references():
    from benchmarks import bench
    once = bench.Settings(warmup=(0, 0), inspect_rounds=1)
    rows = bench.bench_inspection(["imagenet_vit"], once, log=lambda s: None)
    assert [r["model"] for r in rows] == ["imagenet_vit"]
    assert all(r["plain_ms"] > 0 and r["ratio"] > 0 for r in rows)
    assert bench.family("imagenet_late") == "late" and set(bench.IMAGENET_NAMES) <= set(bench.default_names())


def test_grad_cam_at_a_chosen_conv_layer(models, photo):
    from convformer.inspection import conv_layers
    model = models["mid"]
    assert conv_layers(model) == ["stem", "stages.0", "stages.1"]  # CoAtNet's conv part, before attention
    assert conv_layers(models["vit"]) == []  # DeiT's patchify flattens to tokens: no conv activation
    x = preprocess(photo, model)
    r = inspect(model, x, cam_class="pred", cam_layers=["stem", "stages.0"])
    assert list(r.cam) == ["stem", "stages.0"] and r.cam["stem"].shape[-1] == 112
    with pytest.raises(ValueError, match="not conv layers of this model"):
        inspect(model, x, cam_class="pred", cam_layers=["stages.3"])


@pytest.mark.parametrize("name", ["mobilevit_xxs", "levit_128s"])
def test_attention_that_is_not_one_readable_grid_is_said_not_drawn(name):
    """MobileViT attends over unfolded patches (pixel i of every 2 x 2 patch), LeViT computes its softmax with
    no readable step: no map is drawn for them, and a sentence says why."""
    torch.manual_seed(0)
    model = timm.create_model(name).eval()
    r = inspect(model, torch.randn(1, 3, 256 if name.startswith("mobilevit") else 224, 224), flops=False)
    assert r.attentions == {} and r.token_grid == {} and r.rollout_blocks() == []
    assert any("not drawn" in n for n in r.notes)
    assert r.shapes[-1].output_shape == (1, 1000) and r.params == sum(p.numel() for p in model.parameters())
