"""Smoke test of the benchmark harness: quickest mode, one small preset and one timm reference; checks the
table's rows and columns and the JSON file, never timings."""
import json

import pytest

from benchmarks import bench, run

NAMES = ["convformer_vit_tiny", "deit_tiny_patch16_224"]


@pytest.fixture(scope="module")
def result(tmp_path_factory):
    out = tmp_path_factory.mktemp("bench") / "results.json"
    code = run.main(["--quick", "--models", *NAMES, "--skip-app", "--accel", "cpu", "--threads", "1",
                     "--out", str(out)])
    assert code == 0
    return json.loads(out.read_text())


def test_model_rows_and_columns(result):
    rows = {r["model"]: r for r in result["models"]}
    assert list(rows) == NAMES
    for r in rows.values():
        assert r["params"] > 1e6 and r["flops"] > 1e9
        for key in ("ms_b1", "img_s_b2", "gflops_s_b1", "gflops_s_b2"):
            assert r[key] > 0
    # same architecture, same count: attention included on both sides (SDPA would count as zero)
    assert rows["convformer_vit_tiny"]["flops"] == rows["deit_tiny_patch16_224"]["flops"]
    assert rows["convformer_vit_tiny"]["refs"] == ["deit_tiny_patch16_224"]
    assert rows["convformer_vit_tiny"]["ratio_b2"] > 0
    header = result["models_table"].splitlines()[0]
    for col in ("model", "params M", "GFLOPs", "ms b1", "img/s b2", "GFLOP/s b2", "vs ref b2"):
        assert col in header
    assert len(result["models_table"].splitlines()) == 2 + len(NAMES)


def test_inspection_and_targets(result):
    (row,) = result["inspection"]
    assert row["model"] == "convformer_vit_tiny" and row["ratio"] > 0
    targets = {t["target"]: t for t in result["targets"]}
    assert targets["gflops_ratio"]["value"] is not None
    assert targets["cold_start_s"]["met"] is None  # the app part was skipped
    assert result["machine"]["torch_threads"] == 1


def test_accelerator_path_runs_on_cpu(result):
    acc = result["accelerator"]
    assert acc["amp"] == "bfloat16" and [r["model"] for r in acc["models"]] == NAMES


def test_timm_flops_include_attention():
    import torch
    model = bench.build("deit_tiny_patch16_224")
    flops = bench.count_flops(model, torch.zeros(1, 3, 224, 224))
    assert flops > 2.4e9  # 2.15 G without the attention matmuls
    assert all(m.fused_attn for m in model.modules() if hasattr(m, "fused_attn"))  # restored


@pytest.mark.app
def test_app_benchmark_runs_end_to_end():
    """The app part in its smallest form: a real `python app.py`, every client, both models; checks the
    structure and that every ratio is against a bare inspection of the same size, never timings."""
    from benchmarks import bench_app
    a = bench_app.run(requests=2, clients_n=2, per_client=1, log=lambda s: None)
    assert a["cold_start_s"] >= a["cold_http_s"] > 0
    assert {s: r["model_img_size"] for s, r in a["series"].items()} == {"bundled": 64, "random": 224}
    for r in a["series"].values():
        assert set(r["clients"]) == {"gradio_client", "gradio_client, shared SSL", "browser-like HTTP"}
        for c in r["clients"].values():
            assert c["p95_ms"] >= c["p50_ms"] > 0 and c["ratio"] == c["p50_ms"] / r["bare_inspection_ms"]
    assert a["concurrent"]["errors"] == 0 and a["concurrent"]["requests"] == 2
    assert a["concurrent_shared_ssl"]["requests"] == 2
    assert 0 < a["server_peak_rss_gb"] < 8
    assert "browser-like HTTP" in a["table"]


@pytest.mark.app
def test_train_in_app_benchmark_runs_end_to_end(tmp_path):
    """The training-in-the-app benchmark in its smallest form (1 epoch of 500 images, one round): a real
    `python app.py`, the command line stopped and resumed around it, the API client at nice 19; checks the
    structure and that the ratio is app over command line, never timings."""
    from benchmarks import train_in_app
    out = tmp_path / "in_app.json"
    assert train_in_app.main(["--quick", "--rounds", "1", "--requests", "2", "--fusion", "late",
                              "--out", str(out)]) == 0
    r = json.loads(out.read_text())
    (row,) = r["rounds"]
    assert row["command_line_s"] > 0 and row["app_s"] > 0 and row["server_cpu_s"] >= 0
    assert row["ratio"] == round(row["app_s"] / row["command_line_s"], 3)
    assert r["predict"]["idle_ms"] > 0 and r["predict"]["training_ms"] > 0
    assert 0 <= r["idle_server_cpu"] < 2
