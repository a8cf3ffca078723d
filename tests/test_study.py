"""The fusion study (convformer.study): matched models, the plan, the verdict rule, determinism, the command."""
from __future__ import annotations

import json

import pytest
import torch

from convformer.__main__ import main
from convformer.study import FULL, QUICK, plan
from convformer.study.protocol import MATCHED, PARAM_TARGET, PARAM_TOLERANCE, Protocol, RunSpec, model_table
from convformer.study.runs import high_frequency_noise, load_splits, train_run
from convformer.study.stats import compare, metrics, summary, verdicts
from convformer.study.study import document, run_study

@pytest.fixture(autouse=True)
def one_thread():
    """Tiny models train faster on one thread, and far faster on a shared machine (a team of two waits at every
    barrier for a descheduled partner: 5 vs 130 images/s measured at load average 20 on 2 cores)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


TINY = Protocol("tiny", seeds=(0,), steps=3, batch_size=8, eval_every=2, full_size=60, sizes=(60,), val_size=20,
                test_size=20, train_eval_size=20, sgd=False, branches=False, placements=False)


def test_matched_models_within_tolerance_and_flops_stated():
    rows = {r["model"]: r for r in model_table()}
    for name in MATCHED:
        assert abs(rows[name]["params"] / PARAM_TARGET - 1) <= PARAM_TOLERANCE, name
        assert rows[name]["flops"] > 0
    assert rows["mid@1"]["tokens"] == 256 and rows["mid@2"]["tokens"] == 64 and rows["mid"]["tokens"] == 16


def test_plan_covers_every_measurement_once():
    runs = plan(FULL)
    assert len({r.key for r in runs}) == len(runs) == 87
    assert {r.seed for r in runs} == {0, 1, 2}
    assert {r.train_size for r in runs if r.role == "size"} == {1000, 2000, 6000}
    assert [r.role for r in runs[:15]] == ["main"] * 15  # a study stopped early has the main runs first
    assert len(plan(QUICK)) == 19 and {r.seed for r in plan(QUICK)} == {0}


def test_compare_rule_needs_three_seeds_and_separated_ranges():
    a, b = summary([0.9, 0.91, 0.92]), summary([0.8, 0.85, 0.89])
    assert compare(a, b) == "better" and compare(b, a) == "worse"
    assert compare(a, summary([0.8, 0.9, 0.95])) == "overlap"
    assert compare(summary([0.9]), b) == "few seeds"
    assert compare(summary([10, 12, 14]), summary([20, 30, 40]), higher_is_better=False) == "better"
    s = summary([1.0, 2.0, 3.0])
    assert s["mean"] == 2.0 and s["ci95"] == pytest.approx(4.303 * 1.0 / 3 ** 0.5)


def _fake_runs(acc: dict[str, list[float]]) -> list[dict]:
    runs = []
    for model, values in acc.items():
        for seed, a in enumerate(values):
            runs.append({"model": model, "seed": seed, "train_size": 20_000, "optimizer": "adamw", "role": "main",
                         "curve": [], "steps_to": 100 if a > 0.8 else None, "seconds_to": 1.0, "seconds": 2.0,
                         "test_acc": a, "noisy_acc": a - 0.1, "train_acc": a + 0.05, "half_acc": a - 0.2})
    return runs


def test_verdicts_follow_the_intervals():
    acc = {"early": [0.70, 0.71, 0.72], "mid": [0.80, 0.81, 0.82], "late": [0.90, 0.91, 0.92],
           "cnn": [0.85, 0.86, 0.87], "vit": [0.50, 0.52, 0.55], "late/cnn": [0.84, 0.85, 0.86],
           "late/vit": [0.5, 0.5, 0.5], "mid@1": [0.60, 0.61, 0.62], "mid@2": [0.80, 0.81, 0.83]}
    m = metrics(_fake_runs(acc), FULL)
    v = {c["id"]: c["verdict"] for c in verdicts(m)}
    assert v == {"early_faster": "not supported",  # early never reaches 80 %: half-way accuracy, lower
                 "early_loses_local": "supported", "mid_placement": "supported", "late_best": "supported",
                 "late_misses_interaction": "not supported"}
    assert m["late_branches"]["better"] == "late/cnn"
    assert m["late_branches"]["gain"]["mean"] == pytest.approx(0.06)
    one = metrics(_fake_runs({k: v[:1] for k, v in acc.items()}), FULL.replace(seeds=(0,)))
    assert {c["verdict"] for c in verdicts(one)} == {"inconclusive"}


def test_high_frequency_noise_has_no_low_frequencies():
    images = torch.full((4, 3, 32, 32), 128, dtype=torch.uint8)
    noisy = high_frequency_noise(images, 0.1, seed=1)
    diff = noisy.float() - images.float()
    assert 20 < diff.std() < 30  # 0.1 of 255, less rounding
    spectrum = torch.fft.rfft2(diff).abs()
    assert spectrum[..., :8, :8].mean() < 0.05 * spectrum[..., 12:20, 12:].mean()
    assert torch.equal(noisy, high_frequency_noise(images, 0.1, seed=1))


def test_same_seed_same_numbers():
    splits = load_splits(TINY)
    spec = RunSpec("late", 0, 60)
    first, second = (train_run(spec, TINY, splits) for _ in range(2))
    drop = ("seconds", "seconds_to")
    strip = lambda r: {k: v for k, v in r.items() if k not in drop} | {"curve": [(s, a) for s, _, a in r["curve"]]}
    assert strip(first) == strip(second)
    other = train_run(RunSpec("late", 1, 60), TINY, splits)
    assert other["final_loss"] != first["final_loss"]


def test_cancel_keeps_finished_runs(tmp_path):
    import threading
    stop = threading.Event()
    seen = []

    def progress(info):
        seen.append(info)
        if info["event"] == "step" and info["run"] == 2:
            stop.set()
    doc = run_study(TINY, tmp_path, progress=progress, cancel=stop)
    assert doc["complete"] is False and doc["runs_done"] == 1 and doc["runs_planned"] == 5
    assert json.loads((tmp_path / "results.json").read_text())["runs_done"] == 1
    assert len((tmp_path / "runs.jsonl").read_text().splitlines()) == 1


def test_report_and_figure_from_a_document():
    from convformer.study.plots import figure
    from convformer.study.report import markdown
    acc = {m: [0.8, 0.82, 0.85] for m in ("early", "mid", "late", "cnn", "vit", "late/cnn", "late/vit", "mid@1", "mid@2")}
    doc = document(FULL, _fake_runs(acc), complete=False, planned=87,
                   where={"device": "cpu", "threads": 2, "wall_s": 1.0, "load_before": [1, 1, 1], "load_after": [1, 1, 1]})
    text = markdown(doc)
    assert "**partial**" in text and "| early | 222k |" in text and "82.3 [80.0, 85.0]" in text
    assert len(figure(doc).axes) == 8


def test_command_refuses_bad_seeds(capsys):
    assert main(["study", "--seeds", "0", "--out", "unused"]) == 2
    assert "--seeds 0 is not allowed" in capsys.readouterr().err


def test_two_walkers_share_one_folder_and_collect_every_run(tmp_path):
    """--workers: a second process walks the plan from its end (`reverse`) on the same folder (`resume`); each
    run is done once, and `collect` builds the whole document from runs.jsonl."""
    from convformer.study.study import collect
    stop = __import__("threading").Event()

    def progress(info):
        if info["event"] == "run" and info["run"] == 3:
            stop.set()  # the forward walker stops after two runs
    run_study(TINY, tmp_path, progress=progress, cancel=stop)
    seen = []
    run_study(TINY, tmp_path, resume=True, reverse=True, progress=lambda i: seen.append(i["run"]) if i["event"] == "run" else None)
    assert seen == [5, 4, 3]  # from the plan's end, skipping the two runs already there
    rows = [json.loads(line) for line in (tmp_path / "runs.jsonl").read_text().splitlines()]
    assert len(rows) == len({(r["model"], r["seed"], r["train_size"], r["optimizer"]) for r in rows}) == 5
    doc = collect(TINY, tmp_path, {"wall_s": 1.0, "workers": 2})
    assert doc["complete"] is True and doc["runs_done"] == 5 and doc["where"]["workers"] == 2
    assert [r["model"] for r in doc["runs"]] == [s.model for s in plan(TINY)]  # plan order, whoever ran it


def test_command_refuses_bad_workers(capsys):
    assert main(["study", "--workers", "9", "--out", "unused"]) == 2
    assert "--workers 9 is not allowed" in capsys.readouterr().err
