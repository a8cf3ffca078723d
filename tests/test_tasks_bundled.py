"""The bundled task checkpoints keep what their records say, on scenes no training or selection saw."""
from __future__ import annotations

import json

import pytest

from convformer.tasks import bundled_task_checkpoint, create_task_model, scene_split
from convformer.tasks.train import evaluate_task

FUSIONS = ("early", "mid", "late", "cnn", "vit")
BUNDLED = [(t, f, "") for t in ("detect", "segment") for f in FUSIONS if bundled_task_checkpoint(t, f) is not None] \
    + [("detect", f, "set") for f in FUSIONS if bundled_task_checkpoint("detect", f, "set") is not None]


def test_the_default_detector_is_bundled() -> None:
    assert ("detect", "mid", "") in BUNDLED, "the Detect task's default (mid, dense head) must ship with the package"
    assert ("detect", "mid", "set") in BUNDLED  # the set head's query view shows a trained detector


@pytest.mark.parametrize(("task", "fusion", "head"), BUNDLED)
def test_a_bundled_task_checkpoint_reaches_its_recorded_score(task: str, fusion: str, head: str) -> None:
    path = bundled_task_checkpoint(task, fusion, head)
    record = json.loads(path.with_suffix(".json").read_text())["meta"]["metrics"]
    key = {"detect": "test_map_50", "segment": "test_miou"}[task]
    model = create_task_model(task, fusion, **({"head": head} if head else {})).eval()
    assert not head or model.head_kind == head
    fresh = scene_split("test", 100, 64, seed=4242)  # not the record's test split (seed 0), not training's
    score = evaluate_task(model, fresh)["metric"]  # map_50 or miou, as training kept the best epoch
    assert score == pytest.approx(record[key], abs=0.08), (score, record[key])
    assert record["test_metric_float16"] == pytest.approx(record[key], abs=0.005)  # the stored float16 file
    assert path.stat().st_size < 1_500_000  # stored as float16


@pytest.mark.parametrize("fusion", ["mid", "vit"])  # the default segmenter; vit's own recipe (Muon, 4000 scenes)
def test_a_segmenter_is_bundled_with_its_recipe(fusion: str) -> None:
    from convformer.tasks.recipes import task_recipe
    path = bundled_task_checkpoint("segment", fusion)
    meta = json.loads(path.with_suffix(".json").read_text())
    recipe, ran = task_recipe("segment", fusion), meta["meta"]["recipe"]
    assert {k: meta["head"][k] for k in recipe.model} == recipe.model
    assert [ran[k] for k in ("epochs", "train_size", "batch_size", "lr", "optimizer")] == \
        [recipe.epochs, recipe.train_size, recipe.batch_size, recipe.lr, recipe.optimizer]
    assert meta["meta"]["metrics"]["test_miou"] >= 0.6
