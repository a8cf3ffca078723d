"""The task commands end to end (detect, segment, info, code, train) and the one-file export."""
from __future__ import annotations

import pytest
import torch
from PIL import Image

from convformer.__main__ import main
from convformer.config import FUSIONS
from convformer.export import load
from convformer.tasks import create_task_model, render_scene, save_task_checkpoint
from convformer.tasks.export import check_task, export_task


@pytest.fixture(scope="module")
def detector(tmp_path_factory):
    torch.manual_seed(0)
    model = create_task_model("detect", "cnn", weights="random")
    return model, save_task_checkpoint(model, tmp_path_factory.mktemp("ckpt") / "detect.safetensors")


@pytest.mark.parametrize("fusion", FUSIONS)
@pytest.mark.parametrize("task,head", [("detect", "dense"), ("detect", "set"), ("segment", "segformer")])
def test_export_gives_identical_outputs(fusion, task, head):
    model = create_task_model(task, fusion, weights="random", head=head)
    source = export_task(model)
    assert "import timm" not in source and "convformer" not in source.split('"""', 2)[2].split("# the")[0]
    assert check_task(source, model) == 0.0
    assert "class TaskModel" in source and ("def dense_decode" in source) == (head == "dense")


def test_detect_command_prints_boxes_in_the_image_pixels(detector, tmp_path, capsys):
    _, path = detector
    image = tmp_path / "wide.png"
    render_scene(0, "test", 0, (64, 160)).image.resize((320, 128)).save(image)
    assert main(["detect", str(image), "--checkpoint", str(path), "--threshold", "0.0"]) == 0
    out, err = capsys.readouterr()
    lines = out.splitlines()
    assert len(lines) == 100 and "input: 320 x 128 -> 160 x 64 px" in err
    name, score, *box = lines[0].split()
    assert name in create_task_model("detect", "cnn", weights="random").class_names and 0 <= float(score) <= 1
    x1, y1, x2, y2 = map(float, box)
    assert 0 <= x1 <= x2 <= 320 and 0 <= y1 <= y2 <= 128


def test_detect_command_bad_input_one_line(detector, tmp_path, capsys):
    _, path = detector
    image = tmp_path / "a.png"
    Image.new("RGB", (64, 64)).save(image)
    assert main(["detect", str(image), "--checkpoint", str(path), "--threshold", "1.5"]) == 2
    assert capsys.readouterr().err.strip().splitlines()[-1].startswith("error: score_threshold=1.5 is out of range")
    assert main(["detect", str(image), "--checkpoint", str(path), "--threshold", "1.0"]) == 0
    out, err = capsys.readouterr()
    assert out == "" and "no objects found" in err
    assert main(["segment", str(image), "--checkpoint", str(path), "-o", str(tmp_path / "m.png")]) == 2
    assert "this is a detect checkpoint; the segment task needs a segment checkpoint" in capsys.readouterr().err


def test_segment_command_writes_a_mask_of_the_image_size(tmp_path, capsys):
    torch.manual_seed(0)
    path = save_task_checkpoint(create_task_model("segment", "vit", weights="random"), tmp_path / "s.safetensors")
    image = tmp_path / "tall.png"
    Image.new("RGB", (50, 90), (200, 30, 30)).save(image)
    assert main(["segment", str(image), "--checkpoint", str(path), "-o", str(tmp_path / "mask.png")]) == 0
    mask = Image.open(tmp_path / "mask.png")
    assert mask.size == (50, 90) and mask.mode == "L" and max(mask.getextrema()) <= 10


def test_info_and_code_with_task(detector, tmp_path, capsys):
    model, path = detector
    assert main(["info", "--task", "detect", "--checkpoint", str(path)]) == 0
    out = capsys.readouterr().out
    assert "decode.peaks" in out and "(B=1, N=100, 6)" in out and "head.heatmap" in out
    target = tmp_path / "detector.py"
    assert main(["code", "--task", "detect", "--checkpoint", str(path), "-o", str(target)]) == 0
    exported = load(target.read_text()).TaskModel().eval()
    exported.load_state_dict(model.state_dict())
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(exported.detect(x), __import__("convformer.tasks").tasks.decode(model.eval()(x), (64, 64)))


def test_train_task_command_writes_a_checkpoint(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", "--task", "segment", "--fusion", "cnn", "--epochs", "1", "--train-size", "16",
                 "--val-size", "8", "--test-size", "0", "--batch-size", "8", "--out", str(out)]) == 0
    assert "best val miou" in capsys.readouterr().out
    model = create_task_model("segment", "cnn", weights=out / "best.safetensors")
    assert model.task == "segment" and 0 <= model.meta["metrics"]["val_metric"] <= 1


def test_a_warning_is_one_line_on_the_command_line(tmp_path, capsys):
    """vit has no bundled set-head file: the CLI says so in one line, not Python's file / line / source lines."""
    image = tmp_path / "scene.png"
    render_scene(1, "test", 0, 64).image.save(image)
    assert main(["detect", str(image), "--fusion", "vit", "--head", "set"]) == 0
    err = capsys.readouterr().err.splitlines()
    assert err[0] == "warning: no bundled set-head detect checkpoint for 'vit'; the head has random weights"
    assert not any("UserWarning" in line or ".py:" in line for line in err)
