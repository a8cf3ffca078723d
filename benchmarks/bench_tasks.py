"""Detection and segmentation on Shapes scenes: time to target per stage and task, and inference cost.

    python -m benchmarks.bench_tasks train --task detect --fusion mid [--head set] [--set epochs=6 lr=3e-3 ...]
        [--seeds 0] [--out benchmarks/train_runs/9-tasks.jsonl] [--save DIR]
    python -m benchmarks.bench_tasks infer [--out benchmarks/tasks_infer.json]
    python -m benchmarks.bench_tasks peaks [--out benchmarks/tasks_peaks.json]

`train` runs a task recipe (convformer/tasks/recipes.py) with the changes given and appends one JSON line per
run: the metric after every epoch with wall and CPU seconds, the test metric on an unseen split, and the
machine's load (`os.getloadavg()`) before and after, because on a shared machine wall time says little
alone. CPU seconds / threads is what the run would take on idle cores, an estimate.
`infer`: per stage and task, the classifier's forward vs the task model's forward + decoding vs its
inspection (`convformer.tasks.inspect.inspect_task`, + decoding), as ratios in the same run (medians of
interleaved rounds, CPU time, one thread).
`peaks`: each bundled detector on its record's validation and unseen test scenes, decoded with the peak test on
each cell's best class (the default) and with CenterNet's per-class test: mAP@0.5, mAP, and the boxes scoring
>= 0.3 that overlap a box of another class at IoU >= 0.5 (one object drawn twice).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import torch


def _value(text: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def train(args: argparse.Namespace) -> None:
    from convformer.tasks.recipes import run_recipe, task_recipe
    torch.set_num_threads(args.threads)
    changes = dict(kv.split("=", 1) for kv in args.set)
    model_changes = {k[len("model."):]: _value(v) for k, v in changes.items() if k.startswith("model.")}
    changes = {k: _value(v) for k, v in changes.items() if not k.startswith("model.")}
    recipe = task_recipe(args.task, args.fusion, args.head)
    recipe = recipe.replace(**changes, model={**recipe.model, **model_changes})
    for seed in args.seeds:
        load0, cpu0, t0 = os.getloadavg(), time.process_time(), time.perf_counter()
        curve = []

        def progress(info: dict[str, Any]) -> None:
            if info["event"] == "epoch":
                curve.append((round(info["time"], 1), round(info["cpu_time"], 1), round(info["val_metric"], 4)))
                print(f"  epoch {info['epoch']:g}: val {recipe.metric} {info['val_metric']:.3f} "
                      f"{info['time']:.0f} s wall, {info['cpu_time']:.0f} CPU s", flush=True)
        save = Path(args.save) / f"{recipe.task}_{recipe.fusion}{'_' + recipe.head if recipe.head else ''}" \
            if args.save else None
        command = "python -m benchmarks.bench_tasks " + " ".join(sys.argv[1:])
        result = run_recipe(recipe, seed=seed, progress=progress, out_dir=save, clock=args.clock,
                            cache_dir=args.scene_cache, metadata={"command": command, "load_before": load0})
        row = {"task": recipe.task, "fusion": recipe.fusion, "head": recipe.head or "default", "seed": seed,
               "changes": {**changes, **{f"model.{k}": v for k, v in model_changes.items()}},
               "metric": recipe.metric, "best_val": round(result.best["val_metric"], 4),
               "test": round(result.test["metric"], 4) if result.test else None,
               "train_s": round(result.train_time, 1), "cpu_s": curve[-1][1] if curve else None,
               "threads": args.threads, "curve_wall_cpu_metric": curve,
               "load_before": [round(x, 2) for x in load0], "load_after": [round(x, 2) for x in os.getloadavg()],
               "total_s": round(time.perf_counter() - t0, 1), "checkpoint": str(result.checkpoint or "")}
        print(json.dumps(row), flush=True)
        if args.out:
            with open(args.out, "a") as f:
                f.write(json.dumps(row) + "\n")


def _medians(fns: dict[str, Any], rounds: int) -> dict[str, float]:
    """Seconds per call of each fn: median over `rounds`, the fns interleaved within a round (a shared
    machine's load then hits them alike), CPU time of this process (one thread)."""
    for fn in fns.values():
        fn()
    times: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(rounds):
        for k, fn in fns.items():
            t = time.process_time()
            fn()
            times[k].append(time.process_time() - t)
    return {k: sorted(v)[len(v) // 2] for k, v in times.items()}


def infer(args: argparse.Namespace) -> None:
    """Per stage, task and head: the classifier's forward (the reference), the task model's forward +
    decoding, and its inspection (`inspect_task`: the backbone's attention / activations / token grids and the
    head's outputs from one recorded forward, + decoding), as ratios measured in the same run."""
    from convformer.config import FUSIONS
    from convformer.tasks import HEADS, create_task_model, decode
    from convformer.inspection import inspect
    from convformer.tasks.inspect import inspect_task
    from convformer.tasks.recipes import task_recipe
    torch.set_num_threads(args.threads)
    x = torch.randn(1, 3, 64, 64)
    rows = []

    def finish(model, out):
        return decode(out, (64, 64)) if model.task == "detect" else out["logits"].argmax(1)
    for fusion in args.fusions or FUSIONS:
        classifier = create_task_model("classify", fusion, weights="random")
        for task, heads in HEADS.items():
            for head in heads:
                model = create_task_model(task, fusion, weights="random", head=head,
                                          **task_recipe(task, fusion, head).model).eval()
                fns = {"classify": torch.inference_mode()(lambda: classifier(x)),
                       "task": torch.inference_mode()(lambda: finish(model, model(x))),
                       "inspect": lambda: finish(model, inspect_task(model, x, flops=False)[1]),
                       "backbone": torch.inference_mode()(lambda: model.backbone(x)),
                       "inspect_backbone": lambda: inspect(model.backbone, x, flops=False)}
                t = _medians(fns, args.rounds)
                rows.append({"fusion": fusion, "task": task, "head": head, "classify_ms": round(t["classify"] * 1e3, 2),
                             "task_ms": round(t["task"] * 1e3, 2), "inspect_ms": round(t["inspect"] * 1e3, 2),
                             "task_over_classify": round(t["task"] / t["classify"], 2),
                             "inspect_over_task": round(t["inspect"] / t["task"], 2),
                             "backbone_inspect_over_forward": round(t["inspect_backbone"] / t["backbone"], 2),
                             "threads": args.threads, "load": round(os.getloadavg()[0], 2)})
                print(json.dumps(rows[-1]), flush=True)
    if args.out:
        Path(args.out).write_text(json.dumps(rows, indent=1) + "\n")


def _duplicates(dets: torch.Tensor, threshold: float = 0.3, iou: float = 0.5) -> int:
    """(B, N, 6) -> how many pairs of boxes scoring >= threshold, of different classes, overlap at >= iou."""
    from torchvision.ops import box_iou
    n = 0
    for d in dets:
        d = d[d[:, 4] >= threshold]
        other = d[:, 5, None] != d[None, :, 5]
        n += int(((box_iou(d[:, :4], d[:, :4]) >= iou) & other).triu(1).sum())
    return n


def peaks(args: argparse.Namespace) -> None:
    """Per bundled detector and split: the two peak tests side by side on the same forward outputs."""
    from convformer.config import FUSIONS
    from convformer.tasks import bundled_task_checkpoint, create_task_model, scene_split
    from convformer.tasks.decode import dense_decode
    from convformer.tasks.metrics import detections_to_preds, mean_ap
    torch.set_num_threads(args.threads)
    rows = []
    for fusion in FUSIONS:
        if bundled_task_checkpoint("detect", fusion) is None:
            continue
        model = create_task_model("detect", fusion).eval()
        meta, recipe = model.meta, model.meta["recipe"]
        splits = {"val": scene_split("val", recipe["val_size"], recipe["img_size"], meta["seed"], args.scene_cache),
                  "test": scene_split("test", recipe["test_size"], recipe["img_size"], meta["seed"] + 1000,
                                      args.scene_cache)}
        for split, data in splits.items():
            with torch.inference_mode():
                mean, std = (torch.tensor(v).view(1, 3, 1, 1) for v in (model.config.mean, model.config.std))
                x = (data.images.float() / 255 - mean) / std
                out = model(x)
            row = {"fusion": fusion, "split": split, "n": len(data)}
            for name, per_class in (("cell", False), ("per_class", True)):
                dets = dense_decode(out["heatmap"], out["size"], out["offset"], tuple(x.shape[-2:]),
                                    model.head_config.max_detections, per_class=per_class)
                preds = [{k: v[p["scores"] >= 0.01] for k, v in p.items()} for p in detections_to_preds(dets)]
                ap = mean_ap(preds, data.targets())
                row |= {f"{name}_map_50": round(ap["map_50"], 4), f"{name}_map": round(ap["map"], 4),
                        f"{name}_duplicates": _duplicates(dets)}
            rows.append(row)
            print(json.dumps(row), flush=True)
    if args.out:
        Path(args.out).write_text(json.dumps(rows, indent=1) + "\n")


def bundle(args: argparse.Namespace) -> None:
    """A run's best.safetensors -> convformer/weights/{task}_{fusion}[_{head}].safetensors (+ .json), its
    floating-point tensors stored as float16; the float16 model re-scored on the record's test split."""
    from convformer.tasks import load_task_checkpoint, save_task_checkpoint, scene_split
    from convformer.tasks.model import HEADS
    from convformer.tasks.train import evaluate_task
    from convformer.tasks.weights import WEIGHTS_DIR
    torch.set_num_threads(args.threads)
    model = load_task_checkpoint(Path(args.run) / "best.safetensors")
    meta, recipe = model.meta, model.meta["recipe"]
    head = "" if model.head_kind == HEADS[model.task][0] else model.head_kind
    dest = WEIGHTS_DIR / f"{model.task}_{recipe['fusion']}{'_' + head if head else ''}.safetensors"
    save_task_checkpoint(model, dest, half=True, **meta)
    half = load_task_checkpoint(dest, model.task)
    test = scene_split("test", recipe["test_size"], recipe["img_size"], meta["seed"] + 1000, args.scene_cache)
    score = evaluate_task(half, test)["metric"]
    meta = {**meta, "metrics": {**meta["metrics"], "test_metric_float16": score}}
    save_task_checkpoint(model, dest, half=True, **meta)
    print(f"{dest.name}: {dest.stat().st_size / 1e6:.2f} MB, test {meta['metrics']['test_metric']:.4f} "
          f"(float32) / {score:.4f} (float16)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("train")
    p.add_argument("--task", choices=("detect", "segment"), required=True)
    p.add_argument("--fusion", default="mid")
    p.add_argument("--head", default="")
    p.add_argument("--set", nargs="*", default=[], metavar="FIELD=VALUE", help="recipe changes (model.X for the model)")
    p.add_argument("--seeds", type=int, nargs="+", default=[0])
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--out", default="benchmarks/train_runs/9-tasks.jsonl")
    p.add_argument("--save", help="write each run's checkpoint under this folder")
    p.add_argument("--scene-cache", default="runs/scenes", help="rendered scenes kept here between runs")
    p.add_argument("--clock", choices=("wall", "cpu"), default="cpu",
                   help="what time_limit counts: cpu = CPU seconds / threads (default; the machine is shared)")
    p.set_defaults(func=train)
    p = sub.add_parser("infer")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--rounds", type=int, default=30)
    p.add_argument("--fusions", nargs="*")
    p.add_argument("--out")
    p.set_defaults(func=infer)
    p = sub.add_parser("peaks")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--scene-cache", default="runs/scenes")
    p.add_argument("--out")
    p.set_defaults(func=peaks)
    p = sub.add_parser("bundle")
    p.add_argument("run", help="a --save folder, e.g. runs/x/segment_mid")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--scene-cache", default="runs/scenes")
    p.set_defaults(func=bundle)
    args = parser.parse_args()
    args.func(args)


if __name__ == "__main__":
    main()
