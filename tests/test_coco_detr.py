"""convformer.coco_detr: DETR from a Hugging Face cache this test makes (the Hub's config files, random weights,
legacy key names), loaded offline through transformers' real from_pretrained path; predictions, inspection,
Grad-CAM, the shape table, the CLI, and transformers staying unimported until it is used."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from huggingface_hub import constants
from PIL import Image
from safetensors import safe_open

from convformer import coco_detr
from convformer.references import WeightsUnavailable

from . import _fake_detr

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def hub(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("hf") / "hub"
    _fake_detr.write(path)
    return path


@pytest.fixture(scope="module")
def det(hub):
    with pytest.MonkeyPatch.context() as mp:
        offline(mp, hub)
        yield coco_detr.load()


def offline(mp, hub: Path) -> None:
    mp.setattr(constants, "HF_HUB_CACHE", str(hub))
    mp.setattr(constants, "HF_HUB_OFFLINE", True)
    mp.setenv("HF_HUB_CACHE", str(hub))
    mp.setenv("HF_HUB_OFFLINE", "1")


@pytest.fixture(scope="module")
def photo() -> Image.Image:
    rng = np.random.default_rng(0)
    return Image.fromarray((rng.random((120, 160, 3)) * 255).astype(np.uint8))  # width 160, height 120


def test_loads_offline_from_the_cache_with_every_weight_from_the_repository(hub, det):
    assert type(det.model).__name__ == "DetrForObjectDetection" and not det.model.training
    snapshot = next((hub / "models--facebook--detr-resnet-50" / "snapshots").iterdir())
    with safe_open(str(snapshot / "model.safetensors"), "pt") as f:  # the Hub's legacy names, as written
        conv1 = f.get_tensor("model.backbone.conv_encoder.model.conv1.weight")
        out_proj = f.get_tensor("model.encoder.layers.0.self_attn.out_proj.weight")
    # the ResNet came from this file (not from timm's ImageNet weights, which offline could not be fetched)
    assert torch.equal(det.model.model.backbone.model.conv1.weight, conv1)
    assert torch.equal(det.model.model.encoder.layers[0].self_attn.o_proj.weight, out_proj)
    assert det.labels[17] == "cat" and len(det.labels) == 91


def test_the_hub_config_builds_the_published_architecture_without_backbone_weights():
    from transformers import DetrConfig, DetrForObjectDetection

    config = DetrConfig.from_dict(_fake_detr.config(small=False))  # legacy keys: use_pretrained_backbone=True
    assert config.backbone_config.backbone == "resnet50"
    assert config.backbone_config.use_pretrained_backbone is False  # transformers 5 builds timm's ResNet bare
    with torch.device("meta"):
        model = DetrForObjectDetection(config)
    assert sum(p.numel() for p in model.parameters()) == 41_524_768  # benchmarks/bench_coco.py, docs/photos.md


def test_nothing_cached_and_offline_is_one_line(tmp_path, monkeypatch):
    offline(monkeypatch, tmp_path)
    assert not coco_detr.cached()
    with pytest.raises(WeightsUnavailable, match="HF_HUB_OFFLINE") as e:
        coco_detr.load()
    assert "\n" not in str(e.value)


def test_unreachable_hub_is_one_line_within_seconds(tmp_path, monkeypatch):
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(constants, "ENDPOINT", "http://127.0.0.1:9")  # nothing listens there
    start = time.monotonic()
    with pytest.raises(WeightsUnavailable, match="unreachable") as e:
        coco_detr.load()
    assert time.monotonic() - start < 10 and "\n" not in str(e.value)


def test_detect_gives_coco_names_and_boxes_in_the_photos_pixels(det, photo):
    found = coco_detr.detect(det, photo)
    assert found and {d.label for d in found} == {"cat"}
    assert [d.score for d in found] == sorted((d.score for d in found), reverse=True)
    for d in found:
        x1, y1, x2, y2 = d.box
        assert 0 <= x1 < x2 <= 160 + 1e-3 and 0 <= y1 < y2 <= 120 + 1e-3 and d.score > coco_detr.THRESHOLD
    # the same as transformers' own post-processing
    with torch.inference_mode():
        out = det.model(pixel_values=coco_detr.preprocess(det, photo))
    ref = det.processor.post_process_object_detection(out, threshold=coco_detr.THRESHOLD, target_sizes=[(120, 160)])[0]
    assert sorted(ref["scores"].tolist(), reverse=True) == pytest.approx([d.score for d in found], abs=1e-5)
    theirs = np.array(sorted(map(tuple, ref["boxes"].tolist())))
    assert np.allclose(theirs, np.array(sorted(d.box for d in found)), atol=1e-3)


def test_a_high_threshold_keeps_nothing(det, photo):
    assert coco_detr.detect(det, photo, threshold=0.999) == []


def hooks(model) -> list:
    """Every forward hook on the model that is not transformers' own (it installs output-capturing hooks
    once, on the first call that asks for attentions, and keeps them)."""
    return [(name, fn) for name, m in model.named_modules()
            for fn in [*m._forward_hooks.values(), *m._forward_pre_hooks.values()]
            if not fn.__module__.startswith("transformers.")]


def test_inspect_returns_attention_maps_activations_and_named_shapes(det, photo):
    model = det.model
    r = coco_detr.inspect(det, photo)
    h, w = r.grid
    assert r.activations["layer4"].shape[-2:] == (h, w) and list(r.activations) == ["layer1", "layer2", "layer3",
                                                                                    "layer4"]
    assert r.cross.shape == (2, 2, 12, h * w)                                  # decoder layers, heads, Q, N
    assert r.encoder.shape == (1, h * w, h * w)
    assert torch.allclose(r.cross.sum(-1), torch.ones(()), atol=1e-4)
    assert torch.allclose(r.encoder.sum(-1), torch.ones(()), atol=1e-4)
    assert r.query_map(r.detections[0].query).shape == (h, w)
    assert r.query_map(0, layer=0, head=1).shape == (h, w)
    # a clicked pixel -> its token's row: the bottom-right pixel is the last token
    assert np.allclose(r.pixel_map(159, 119).ravel(), r.encoder[-1, h * w - 1].numpy())
    assert np.allclose(r.pixel_map(0, 0).ravel(), r.encoder[-1, 0].numpy())
    names = [row.name for row in r.rows]
    assert names == ["input", "backbone.stem", "backbone.layer1", "backbone.layer2", "backbone.layer3",
                     "backbone.layer4", "input_projection", "tokens + position", "encoder x1", "object queries",
                     "decoder x2", "class_head", "box_head", "post-process"]
    rows = {row.name: row for row in r.rows}
    assert rows["input"].output == f"(B=1, C=3, H={r.input_hw[0]}, W={r.input_hw[1]})"
    assert rows["tokens + position"].output.startswith(f"(B=1, N={h}x{w}={h * w}, D=64)")
    assert rows["class_head"].output == "(B=1, Q=12, K+1=92)" and rows["box_head"].output == "(B=1, Q=12, 4)"
    assert rows["post-process"].output.startswith(f"(M={len(r.detections)}, 4)")
    assert "short side 128" in rows["input"].note  # read from the processor's config
    assert sum(row.params for row in r.rows) == sum(p.numel() for p in model.parameters())
    # hooks released (transformers keeps its own), attention back on its fast path
    assert hooks(model) == []
    assert model.config._attn_implementation == "sdpa"
    assert "encoder x1" in coco_detr.format_rows(r.rows)
    found = r.as_detections()  # the Detections-like form of issue 23's Detect views
    n = len(r.detections)
    assert found.boxes.shape == (n, 4) and found.labels.tolist() == [d.class_id for d in r.detections]
    assert found.attention.shape == (n, 2, h, w)
    assert np.allclose(found.attention[0, -1].numpy(), r.query_map(r.detections[0].query), atol=1e-6)


def test_eager_capture_path_agrees_with_sdpa(det, photo):
    with torch.inference_mode():
        fast = det.model(pixel_values=coco_detr.preprocess(det, photo)).logits
    r = coco_detr.inspect(det, photo)
    assert torch.allclose(fast[0], r.logits, atol=1e-4)


def test_grad_cam_explains_one_box_and_touches_no_parameter(det, photo):
    d = coco_detr.detect(det, photo)[0]
    cam = coco_detr.grad_cam(det, photo, d.query, d.class_id)
    r = coco_detr.inspect(det, photo)
    assert cam.shape == r.grid and cam.min() >= 0 and cam.max() == pytest.approx(1.0)
    assert all(p.grad is None for p in det.model.parameters())
    assert hooks(det.model) == []


def run(args: list[str], env: dict) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, cwd=ROOT, env=env, timeout=300)


def test_cli_detect_prints_one_line_per_box(hub, det, photo, tmp_path):
    path = tmp_path / "photo.png"
    photo.save(path)
    env = {**os.environ, "HF_HUB_CACHE": str(hub), "HF_HUB_OFFLINE": "1"}
    out = run(["-m", "convformer", "detect", str(path), "--weights", "coco"], env)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.strip().splitlines()
    expected = coco_detr.detect(det, photo)
    assert len(lines) == len(expected)
    label, score, box = lines[0].split("\t")
    assert label == "cat" and float(score) == pytest.approx(expected[0].score, abs=1e-3)
    assert [float(v) for v in box.split()] == pytest.approx(expected[0].box, abs=0.1)


def test_cli_without_weights_is_one_line(tmp_path, photo):
    path = tmp_path / "photo.png"
    photo.save(path)
    env = {**os.environ, "HF_HUB_CACHE": str(tmp_path / "empty"), "HF_HUB_OFFLINE": "1"}
    out = run(["-m", "convformer", "detect", str(path), "--weights", "coco"], env)
    assert out.returncode == 2 and out.stdout == ""
    assert out.stderr.count("\n") == 1 and "HF_HUB_OFFLINE" in out.stderr


def test_transformers_is_imported_only_when_the_detector_loads():
    code = ("import sys, convformer, convformer.coco_detr, convformer.__main__; "
            "print(json.dumps('transformers' in sys.modules))")
    out = subprocess.run([sys.executable, "-c", "import json; " + code], capture_output=True, text=True, cwd=ROOT,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout) is False


def test_the_benchmarked_candidates_have_their_published_sizes():
    """benchmarks/bench_coco.py's configs give the parameter counts the model cards / papers state (M)."""
    from benchmarks import bench_coco

    published = {"facebook/detr-resnet-50": 41, "microsoft/conditional-detr-resnet-50": 44,
                 "PekingU/rtdetr_r18vd": 20}
    for repo, millions in published.items():
        with torch.device("meta"):
            model, _ = bench_coco.build(repo)
        assert abs(sum(p.numel() for p in model.parameters()) / 1e6 - millions) < 1, repo


def test_cli_joins_the_tasks_detect_command_when_it_is_there():
    """With issue 23's `detect` registered first, --weights coco comes here and the default goes to it."""
    import argparse

    from convformer import coco_cli

    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="command")
    p = sub.add_parser("detect")
    p.add_argument("image")
    p.add_argument("--threshold", type=float, default=0.3)
    called = []
    p.set_defaults(func=lambda args: called.append(args.weights))
    coco_cli.add_parser(sub)
    args = parser.parse_args(["detect", "x.png"])
    args.func(args)
    assert called == ["bundled"]
    assert parser.parse_args(["detect", "x.png", "--weights", "coco"]).weights == "coco"
