"""Checkpoints: safetensors round trip, clear errors for anything that does not fit, never unpickle."""
import json
import pickle
import struct

import pytest
import torch

import convformer as cf
from convformer.export.checkpoint import read_info
from tests.test_model import tiny


@pytest.fixture
def saved(tmp_path):
    model = tiny("late", merge="gate").eval()
    path = cf.save_checkpoint(model, tmp_path / "late.safetensors", classes=list("abcde"), dataset="unit")
    return model, path


def test_round_trip_gives_identical_logits(saved):
    model, path = saved
    loaded = cf.load_checkpoint(path)
    x = torch.randn(2, 3, 48, 48)
    with torch.no_grad():
        assert torch.equal(model(x), loaded(x))
    assert loaded.config == model.config
    assert loaded.meta == {"classes": list("abcde"), "dataset": "unit"}
    assert json.loads(path.with_suffix(".json").read_text())["config"]["merge"] == "gate"


def test_config_that_does_not_fit_names_the_tensor(saved):
    model, path = saved
    with pytest.raises(cf.CheckpointError, match=r"qkv.weight has shape \(72, 24\), the model needs \(96, 32\)"):
        cf.load_checkpoint(path, config=model.config.replace(embed_dim=32))
    with pytest.raises(cf.CheckpointError, match="missing branches.vit.blocks.2"):
        cf.load_checkpoint(path, config=model.config.replace(depth=3))


def test_not_safetensors_and_truncated(tmp_path, saved):
    _, path = saved
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"hello, not a checkpoint")
    with pytest.raises(cf.CheckpointError, match="not a safetensors file"):
        cf.load_checkpoint(bad)
    bad.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(cf.CheckpointError):
        cf.load_checkpoint(bad)
    with pytest.raises(cf.CheckpointError, match="no checkpoint file"):
        cf.load_checkpoint(tmp_path / "missing.safetensors")


def test_header_that_lies_about_offsets(tmp_path, saved):
    _, path = saved
    data = path.read_bytes()
    n = struct.unpack("<Q", data[:8])[0]
    header = json.loads(data[8:8 + n])
    name = next(k for k in header if k != "__metadata__")
    header[name]["data_offsets"] = [0, 10**9]
    text = json.dumps(header).encode()
    lie = tmp_path / "lie.safetensors"
    lie.write_bytes(struct.pack("<Q", len(text)) + text + data[8 + n:])
    with pytest.raises(cf.CheckpointError):
        cf.load_checkpoint(lie)


def test_pickle_is_never_executed(tmp_path):
    marker = tmp_path / "pwned"

    class Payload:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    evil = tmp_path / "evil.safetensors"
    evil.write_bytes(pickle.dumps(Payload()))
    with pytest.raises(cf.CheckpointError):
        cf.load_checkpoint(evil)
    torch.save({"x": Payload()}, tmp_path / "evil.pt")  # a torch.save zip renamed
    (tmp_path / "evil.pt").rename(evil)
    with pytest.raises(cf.CheckpointError):
        cf.load_checkpoint(evil)
    assert not marker.exists()


def test_plain_safetensors_without_config(tmp_path):
    from safetensors.torch import save_file
    path = tmp_path / "plain.safetensors"
    save_file({"w": torch.zeros(2)}, str(path))
    with pytest.raises(cf.CheckpointError, match="no ConvFormer config"):
        cf.load_checkpoint(path)


# ---- what a header declares is checked before anything is built --------------------------------------------
def _header_only(path, info: dict, tensors: dict | None = None) -> None:
    """A safetensors file whose header says `info`, holding only `tensors` (default: none at all)."""
    from safetensors.torch import save_file
    save_file(tensors or {}, str(path), metadata={"convformer": json.dumps(info), "format": "pt"})


@pytest.fixture
def builds(monkeypatch):
    """The devices of every ConvFormer built through checkpoint.py (the meta device costs no memory)."""
    import convformer.export.checkpoint as ck
    devices = []

    class Spy(ck.ConvFormer):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            devices.append(next(self.parameters()).device.type)
    monkeypatch.setattr(ck, "ConvFormer", Spy)
    return devices


def test_a_tiny_file_declaring_a_huge_classifier_builds_nothing(tmp_path, builds):
    path = tmp_path / "liar.safetensors"
    config = tiny("vit").config.replace(num_classes=100_000, embed_dim=512, num_heads=8)
    _header_only(path, {"config": config.to_dict(), "meta": {}})
    assert path.stat().st_size < 2000
    with pytest.raises(cf.CheckpointError, match="the file holds no tensors; the model needs 31"):
        cf.load_checkpoint(path)
    assert builds and set(builds) == {"meta"}, builds


def test_the_classifier_counts_in_the_parameter_limit(tmp_path, builds):
    config = cf.ConvFormerConfig(fusion="vit", embed_dim=2048, num_heads=16, depth=4, patch_size=32,
                                 num_classes=100_000)  # 200 M in its blocks, as much again in its head
    path = tmp_path / "big.safetensors"
    _header_only(path, {"config": config.to_dict(), "meta": {}})
    with pytest.raises(cf.CheckpointError, match=r"saved with a model of 4\d\d M parameters \(100000 classes in its classifier\)"):
        read_info(path)
    assert set(builds) <= {"meta"}


@pytest.mark.parametrize("text", ["[" * 100_000 + "]" * 100_000, json.dumps({"config": {}, "meta": {"a": json.loads(
    "[" * 50 + "]" * 50)}})])
def test_deeply_nested_header_is_refused_clearly(tmp_path, text):
    from safetensors.torch import save_file
    path = tmp_path / "nested.safetensors"
    save_file({}, str(path), metadata={"convformer": text, "format": "pt"})
    with pytest.raises(cf.CheckpointError, match="nested too deeply"):
        read_info(path)


@pytest.mark.parametrize("change, words", [
    (dict(in_chans=4), r"saved with in_chans=4; images here give 3 channels \(RGB\) or 1"),
    (dict(std=(1e-9, 0.2, 0.2)), r"saved with std=\(1e-09, 0.2, 0.2\); each must be from 0.001 to 1000"),
    (dict(mean=(1e300, 0.0, 0.0)), r"saved with mean=\(1e\+300, 0, 0\)"),
])
def test_a_config_that_cannot_run_on_images_says_what_it_was_saved_with(tmp_path, change, words):
    model = tiny("mid", **change)
    path = cf.save_checkpoint(model, tmp_path / "odd.safetensors")
    with pytest.raises(cf.CheckpointError, match=words):
        cf.load_checkpoint(path)


def test_another_fusion_stage_says_what_it_was_saved_with(tmp_path, builds):
    path = cf.save_checkpoint(tiny("mid"), tmp_path / "mid.safetensors")
    with pytest.raises(cf.CheckpointError, match=r"it was saved with fusion='mid' \(here 'late'\).*missing"):
        cf.load_checkpoint(path, config=tiny("late").config)
    assert set(builds) == {"meta"}  # refused from the header, before building


def test_names_from_the_file_are_cut_in_messages(tmp_path):
    model = tiny("cnn")
    state = {**model.state_dict(), "x" * 100_000: torch.zeros(1)}
    path = tmp_path / "long.safetensors"
    _header_only(path, {"config": model.config.to_dict(), "meta": {}}, state)
    with pytest.raises(cf.CheckpointError, match="unexpected 'x+… \\(100002 characters\\)") as info:
        cf.load_checkpoint(path)
    assert len(str(info.value)) < 300


def test_header_length_over_the_limit_is_refused_before_reading_it(tmp_path):
    path = tmp_path / "huge_header.safetensors"
    path.write_bytes(struct.pack("<Q", 10**9) + b"{" + b" " * 100)
    with pytest.raises(cf.CheckpointError, match="header is too large"):
        read_info(path)
