"""Which published COCO detector backs the Detect task's "Pretrained on COCO" weights (issue 24).

Builds each candidate from a config written like its Hub `config.json` (random weights: no Hub here), counts
parameters (download size = params x 4 bytes, float32 safetensors) and times one photo at the model's default
input size on CPU, in interleaved rounds (order reversed every other round; the median), as a ratio to DETR
R50 measured in the same run. Predictions are in NOTES.md section 13.

    nice -n 5 python -m benchmarks.bench_coco --rounds 5 --out benchmarks/coco_candidates.json
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time

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


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--threads", type=int, default=os.cpu_count())
    p.add_argument("--out")
    args = p.parse_args(argv)
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
