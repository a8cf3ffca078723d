"""Checkpoints: safetensors round trip, clear errors for anything that does not fit, never unpickle."""
import json
import pickle
import struct

import pytest
import torch

import convformer as cf
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
