"""Which published COCO detector backs the Detect task's "Pretrained on COCO" weights (issue 24).

Builds each candidate from a config written like its Hub `config.json` (random weights: no Hub here), counts
parameters (download size = params x 4 bytes, float32 safetensors) and times one photo at the model's default
input size on CPU, in interleaved rounds (order reversed every other round; the median), as a ratio to DETR
R50 measured in the same run. Predictions are in NOTES.md ("Which COCO detector for photos").

    nice -n 5 python -m benchmarks.bench_coco --rounds 5 --out benchmarks/coco_candidates.json

`--startup BASELINE_CHECKOUT`: the app's cold start and memory, each a fresh process (interleaved rounds,
medians): `import app` in a checkout without the COCO views (e.g. main before issue 24) and in this one, and
here again with the choice used: DETR R50 (the Hub's config, random weights, written once into a temporary
Hugging Face cache) loaded offline and run on one 640 x 480 photo. RSS by psutil after each step.

    nice -n 5 python -m benchmarks.bench_coco --startup /path/to/baseline --rounds 3 --out benchmarks/coco_startup.json
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

# Written like the Hub's config.json of each repository (architecture fields only; labels are counted).
CANDIDATES: dict[str, dict] = {
    "facebook/detr-resnet-50": dict(
        model_type="detr", backbone="resnet50", use_timm_backbone=True, use_pretrained_backbone=True,
        num_queries=100, encoder_layers=6, decoder_layers=6, d_model=256, encoder_ffn_dim=2048,
        decoder_ffn_dim=2048, num_labels=91, size=(800, 1066)),
    "microsoft/conditional-detr-resnet-50": dict(
        model_type="conditional_detr", backbone="resnet50", use_timm_backbone=True, use_pretrained_backbone=True,
        num_queries=300, encoder_layers=6, decoder_layers=6, d_model=256, encoder_ffn_dim=2048,
        decoder_ffn_dim=2048, num_labels=91, size=(800, 1066)),
    "PekingU/rtdetr_r18vd": dict(
        model_type="rt_detr", backbone_config=dict(
            model_type="rt_detr_resnet", depths=[2, 2, 2, 2], hidden_sizes=[64, 128, 256, 512], layer_type="basic",
            downsample_in_bottleneck=False, embedding_size=64, out_features=["stage2", "stage3", "stage4"]),
        encoder_in_channels=[128, 256, 512], hidden_expansion=0.5, decoder_layers=3, num_queries=300,
        num_labels=80, size=(640, 640)),
}


def build(repo: str) -> tuple[torch.nn.Module, tuple[int, int]]:
    """The candidate's architecture with random weights, through transformers' own config and model classes."""
    from transformers import AutoConfig, AutoModelForObjectDetection

    spec = dict(CANDIDATES[repo])
    size = spec.pop("size")
    config = AutoConfig.for_model(**spec)
    return AutoModelForObjectDetection.from_config(config).eval(), size


def time_once(model: torch.nn.Module, x: torch.Tensor) -> float:
    t = time.perf_counter()
    with torch.inference_mode():
        model(pixel_values=x)
    return time.perf_counter() - t


# run in a fresh process: prints one JSON line of timings (s) and RSS (MB) after each step
PROBE = """
import json, os, sys, time
t0 = time.perf_counter()
import psutil
rss = lambda: psutil.Process().memory_info().rss / 2**20
out = {}
import app
out["import_app_s"], out["import_app_mb"] = time.perf_counter() - t0, rss()
out["transformers_imported"] = "transformers" in sys.modules
if os.environ.get("COCO_USE") == "1":
    from PIL import Image
    from convformer import coco_detr
    t = time.perf_counter()
    det = coco_detr.load()
    out["load_s"], out["load_mb"] = time.perf_counter() - t, rss()
    t = time.perf_counter()
    coco_detr.detect(det, Image.new("RGB", (640, 480), "grey"))
    out["detect_s"], out["detect_mb"] = time.perf_counter() - t, rss()
print(json.dumps(out))
"""


def write_full_cache(hub: Path) -> None:
    """DETR R50 at full size (the Hub's config.json, random weights) in a Hugging Face cache at `hub`."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from tests import _fake_detr
    _fake_detr.write(hub, small=False)


def probe(cwd: str, env: dict) -> dict:
    out = subprocess.run([sys.executable, "-c", PROBE], cwd=cwd, env=env, capture_output=True, text=True,
                         timeout=900)
    if out.returncode:
        raise RuntimeError(out.stderr[-2000:])
    return json.loads(out.stdout.strip().splitlines()[-1])


def startup(baseline: str, rounds: int) -> dict:
    """Cold start and RSS: baseline checkout, this checkout, this checkout with the COCO choice used."""
    hub = Path(tempfile.mkdtemp(prefix="bench-coco-hf-")) / "hub"
    write_full_cache(hub)
    env = {**os.environ, "HF_HUB_CACHE": str(hub), "HF_HUB_OFFLINE": "1", "GRADIO_ANALYTICS_ENABLED": "False",
           "OMP_NUM_THREADS": "2"}
    here = str(Path(__file__).resolve().parents[1])
    runs = {"baseline": (baseline, {}), "coco_unused": (here, {}), "coco_used": (here, {"COCO_USE": "1"})}
    results: dict[str, list[dict]] = {k: [] for k in runs}
    for r in range(rounds):
        for name in (list(runs) if r % 2 == 0 else list(runs)[::-1]):
            cwd, extra = runs[name]
            results[name].append(probe(cwd, {**env, **extra}))
    summary = {name: {k: round(statistics.median(x[k] for x in rs), 3) for k in rs[0] if k != "transformers_imported"}
               | {"transformers_imported": any(x["transformers_imported"] for x in rs)}
               for name, rs in results.items()}
    for name, s in summary.items():
        print(name, s)
    return {"summary": summary, "runs": results, "baseline": baseline}


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--threads", type=int, default=os.cpu_count())
    p.add_argument("--startup", metavar="BASELINE_CHECKOUT", help="measure the app's cold start and memory instead")
    p.add_argument("--out")
    args = p.parse_args(argv)
    if args.startup:
        load0 = os.getloadavg()
        result = startup(args.startup, args.rounds) | {"load_start": load0, "load_end": os.getloadavg()}
        if args.out:
            Path(args.out).write_text(json.dumps(result, indent=1))
        return result
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    load0 = os.getloadavg()
    models = {repo: build(repo) for repo in CANDIDATES}
    inputs = {repo: torch.randn(1, 3, *size) for repo, (_, size) in models.items()}
    for repo, (model, _) in models.items():  # warm-up
        time_once(model, inputs[repo])
    times: dict[str, list[float]] = {repo: [] for repo in models}
    order = list(models)
    for r in range(args.rounds):
        for repo in (order if r % 2 == 0 else order[::-1]):
            times[repo].append(time_once(models[repo][0], inputs[repo]))
    ref = statistics.median(times[order[0]])
    rows = []
    for repo, (model, size) in models.items():
        n = sum(p.numel() for p in model.parameters())
        ms = statistics.median(times[repo]) * 1e3
        rows.append(dict(repo=repo, params=n, download_mb=round(n * 4 / 1e6, 1), input=list(size),
                         ms=round(ms, 1), ratio=round(ms / 1e3 / ref, 2), times_s=[round(t, 3) for t in times[repo]]))
        print(f"{repo:38s} {n / 1e6:6.1f} M  {n * 4 / 1e6:6.1f} MB  {size[0]}x{size[1]}  {ms:8.0f} ms  "
              f"{ms / 1e3 / ref:5.2f}x")
    result = dict(rows=rows, threads=args.threads, rounds=args.rounds, load_start=load0, load_end=os.getloadavg(),
                  cpu=platform.processor() or platform.machine(), torch=torch.__version__)
    if args.out:
        with open(args.out, "w") as f:
            json.dump(result, f, indent=1)
    return result


if __name__ == "__main__":
    main()
