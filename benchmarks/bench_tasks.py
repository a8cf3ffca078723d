"""Detection and segmentation on Shapes scenes: time to target per stage and task, and inference cost.

    python -m benchmarks.bench_tasks train --task detect --fusion mid [--head set] [--set epochs=6 lr=3e-3 ...]
        [--seeds 0] [--out benchmarks/train_runs/9-tasks.jsonl] [--save DIR]
    python -m benchmarks.bench_tasks infer [--out benchmarks/tasks_infer.json]

`train` runs a task recipe (convformer/tasks/recipes.py) with the changes given and appends one JSON line per
run: the metric after every epoch with wall and CPU seconds, the test metric on an unseen split, and the
machine's load (`os.getloadavg()`) before and after, because on a shared machine wall time says little
alone. CPU seconds / threads is what the run would take on idle cores, an estimate.
`infer`: per stage and task, a plain backbone forward vs the task model's forward + decoding vs
`task_shape_rows`, as ratios in the same run.
"""
from __future__ import annotations

import argparse
import json
import os
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
        result = run_recipe(recipe, seed=seed, progress=progress, out_dir=save, clock=args.clock,
                            cache_dir=args.scene_cache)
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


def infer(args: argparse.Namespace) -> None:
    from convformer.config import FUSIONS
    from convformer.tasks import HEADS, create_task_model, decode, task_shape_rows
    torch.set_num_threads(args.threads)
    x = torch.randn(1, 3, 64, 64)
    rows = []

    def clock(fn, n: int = 20) -> float:
        fn()
        t = time.perf_counter()
        for _ in range(n):
            fn()
        return (time.perf_counter() - t) / n
    for fusion in FUSIONS:
        for task, heads in HEADS.items():
            for head in heads:
                model = create_task_model(task, fusion, weights="random", head=head).eval()
                with torch.inference_mode():
                    base = clock(lambda: model.backbone(x))
                    full = clock(lambda: decode(model(x), (64, 64)) if task == "detect" else model(x)["logits"].argmax(1))
                shapes = clock(lambda: task_shape_rows(model, x), 5)
                rows.append({"fusion": fusion, "task": task, "head": head, "backbone_ms": round(base * 1e3, 2),
                             "task_ms": round(full * 1e3, 2), "task_over_backbone": round(full / base, 2),
                             "shape_rows_over_task": round(shapes / full, 2), "load": os.getloadavg()[0]})
                print(json.dumps(rows[-1]), flush=True)
    if args.out:
        Path(args.out).write_text(json.dumps(rows, indent=1) + "\n")


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
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--out")
    p.set_defaults(func=infer)
    args = parser.parse_args()
    args.func(args)


if __name__ == "__main__":
    main()
