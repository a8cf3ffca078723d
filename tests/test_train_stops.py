"""Why a run ended, named (issue 27): every epoch ran, Cancel, the time limit, or the target accuracy reached;
and where a run's time went after training (the final test, the checkpoint), reported with "done"."""
from __future__ import annotations

import json
import threading

import pytest
import torch

from convformer import ConvFormerConfig, build_model
from convformer.train import STOPS, TrainConfig, fit, make_datasets

TINY = ConvFormerConfig(fusion="cnn", img_size=32, num_classes=10, conv_widths=(8, 16), conv_depths=(0, 1))
FAST = dict(batch_size=32, lr=3e-3, warmup_epochs=0.5, progress_bar=False)


@pytest.fixture(scope="module")
def data():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield make_datasets("shapes", 32, train_size=128, val_size=64, test_size=32, seed=0)
    torch.set_num_threads(threads)


def run(data, tmp_path=None, cancel=None, at_step=None, **cfg):
    done = []

    def progress(info):
        if info["event"] == "done":
            done.append(info)
        if at_step is not None and info["event"] == "step" and info["step"] == at_step:
            cancel.set()
    r = fit(build_model(TINY), data.train, data.val, TrainConfig(**{**FAST, **cfg}), progress=progress,
            cancel=cancel, out_dir=tmp_path, test_set=data.test)
    return r, done[0]


def test_every_epoch_ran(data, tmp_path):
    r, done = run(data, tmp_path, epochs=2)
    assert r.stop == done["stop"] == "completed" and not r.cancelled and len(r.history) == 2
    assert json.loads((tmp_path / "metrics.json").read_text())["stop"] == "completed"
    assert set(done["timing"]) == {"train", "test", "save"} and all(v >= 0 for v in done["timing"].values())
    assert done["timing"]["train"] == r.train_time


def test_cancelled(data):
    r, done = run(data, cancel=threading.Event(), at_step=2, epochs=3)
    assert r.stop == done["stop"] == "cancelled" and r.cancelled and len(r.step_losses) == 2


def test_time_limit(data):
    r, _ = run(data, epochs=3, time_limit=1e-6)  # passed after the first step
    assert r.stop == "time_limit" and r.cancelled and len(r.step_losses) == 1


def test_target_accuracy_reached(data):
    r, _ = run(data, epochs=3, target_acc=1e-6)  # any accuracy reaches it: stops after the first epoch
    assert r.stop == "target_acc" and not r.cancelled and len(r.history) == 1
    r, _ = run(data, epochs=1, target_acc=1e-6)  # the last epoch: it simply completed
    assert r.stop == "completed"


def test_stop_names_and_a_bad_target():
    assert STOPS == ("completed", "cancelled", "time_limit", "target_acc")
    with pytest.raises(ValueError, match="target_acc=1.5"):
        TrainConfig(target_acc=1.5)
