"""Command line for the tasks: `detect IMAGE`, `segment IMAGE -o mask.png`, `train --task detect|segment`,
and the `--task` flags of `info` and `code` (registered by `convformer.__main__`)."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import torch

from ..flags import add_model_flags
from .model import HEADS


def add_task_flags(p: argparse.ArgumentParser) -> None:
    """detect / segment's model: --fusion and --checkpoint (convformer.flags), --head."""
    add_model_flags(p, fusion_help="backbone stage (default mid)", preset_help=None,
                    checkpoint_help="a task checkpoint (.safetensors) instead of the bundled one")
    p.add_argument("--head", choices=sorted({h for hs in HEADS.values() for h in hs}), default="",
                   help="detect: dense (CenterNet, default) or set (DETR)")


def task_model(args: argparse.Namespace, task: str):
    from .weights import create_task_model
    head = {"head": args.head} if getattr(args, "head", "") else {}
    return create_task_model(task, args.fusion, weights=args.checkpoint or "bundled", **head)


def add_parsers(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("detect", help="print one line per box: class score x1 y1 x2 y2 (the image's pixels)")
    p.add_argument("image")
    add_task_flags(p)
    p.add_argument("--threshold", type=float, default=0.3, help="score threshold in [0, 1] (default 0.3)")
    p.set_defaults(func=detect_command)
    p = sub.add_parser("segment", help="write a mask PNG: one class index per pixel (0 background)")
    p.add_argument("image")
    add_task_flags(p)
    p.add_argument("-o", "--out", required=True, help="mask PNG (class indices; --color for a picture)")
    p.add_argument("--color", action="store_true", help="write a coloured picture instead of class indices")
    p.set_defaults(func=segment_command)


def detect_command(args: argparse.Namespace) -> None:
    from ..data.images import load_image
    from .infer import detect, input_message
    model = task_model(args, "detect")
    image = load_image(args.image)
    print(f"input: {input_message(model, image)}", file=sys.stderr)
    dets = detect(model, image, args.threshold)
    print(dets.message, file=sys.stderr)
    for name, score, x1, y1, x2, y2 in dets.rows():
        print(f"{name} {score:.3f} {x1:.1f} {y1:.1f} {x2:.1f} {y2:.1f}")


def segment_command(args: argparse.Namespace) -> None:
    from PIL import Image

    from ..data.images import load_image
    from .infer import input_message, segment
    from .scenes import semantic_picture
    model = task_model(args, "segment")
    image = load_image(args.image)
    print(f"input: {input_message(model, image)}", file=sys.stderr)
    seg = segment(model, image)
    picture = semantic_picture(seg.mask) if args.color else Image.fromarray(seg.mask.to(torch.uint8).numpy())
    picture.save(args.out)
    print(seg.message, file=sys.stderr)
    for name, share in seg.areas.items():
        print(f"{name} {share:.1%}")


def info_task(args: argparse.Namespace) -> None:
    """`info --task detect|segment`: the backbone's table, then the rows past it to the decoded output."""
    from ..axes import format_table
    from ..inspection import human, inspect
    from .rows import task_shape_rows
    model = task_model(args, args.task)
    _, h, w = model.pretrained_cfg["input_size"]
    x = torch.zeros(args.batch, 3, h, w)
    print(f"{args.task} on fusion={model.config.fusion}, head={model.head_kind}")
    print(format_table(inspect(model.backbone, x).shapes, human))
    lines = [("step", "input", "output", "params", "FLOPs", "what")]
    rows = task_shape_rows(model, x)
    lines += [(r.name, r.input_axes, r.output_axes, human(r.params), human(r.flops), r.note) for r in rows]
    widths = [max(len(line[i]) for line in lines) for i in range(6)]
    print("\n".join("  ".join(c.ljust(wd) for c, wd in zip(line, widths)).rstrip() for line in lines))


def attach(p: argparse.ArgumentParser, command) -> None:
    """Add --task (and --head) to an existing command (`train`, `code`, `info`): classify keeps its own
    function, detect / segment run `command`."""
    p.add_argument("--task", choices=("classify", "detect", "segment"), default="classify",
                   help="detect / segment: a head on the --fusion backbone (Shapes scenes)")
    if "--head" not in p._option_string_actions:
        p.add_argument("--head", choices=sorted({h for hs in HEADS.values() for h in hs}), default="",
                       help="with --task detect: dense (CenterNet, default) or set (DETR)")
    classify = p.get_default("func")
    p.set_defaults(func=lambda args: classify(args) if args.task == "classify" else command(args))


def code_task(args: argparse.Namespace) -> None:
    """`code --task detect|segment`: the task model (backbone, neck, head, decoding) as one file, checked."""
    from ..export.code import emit
    from .export import check_task, export_task
    if getattr(args, "preset", None):
        raise ValueError("--task takes the stage's task model: use --fusion or --checkpoint, not --preset")
    args.fusion = args.fusion or "mid"
    model = task_model(args, args.task)
    name = Path(args.checkpoint).name if args.checkpoint else f"{args.task} on {args.fusion}"
    source = export_task(model, name=name, command=f"python -m convformer code --task {args.task} "
                         f"--fusion {args.fusion}" + (f" --head {args.head}" if args.head else ""))
    emit(source, check_task(source, model), args.out, "outputs")


def train_task_command(args: argparse.Namespace) -> None:
    """`train --task detect|segment`: the stage's task recipe, flags given explicitly override it."""
    from .recipes import run_recipe, task_recipe
    if getattr(args, "recipe", None) or getattr(args, "init", None) or getattr(args, "preset", None):
        raise ValueError("--task takes the stage's task recipe: use --fusion (and --head), not --recipe / --init / --preset")
    recipe = task_recipe(args.task, args.fusion or "mid", args.head or "")
    changes: dict[str, Any] = {k: getattr(args, k) for k in ("epochs", "lr", "batch_size", "train_size", "val_size")
                               if getattr(args, k, None) is not None}
    if getattr(args, "time_limit", None):
        changes["time_limit"] = args.time_limit
    if getattr(args, "test_size", None) is not None:  # at most the recipe's: the flag's default is classification's
        changes["test_size"] = min(args.test_size, recipe.test_size)
    if args.threads:
        torch.set_num_threads(args.threads)
    result = run_recipe(recipe.replace(**changes), out_dir=Path(args.out), seed=args.seed, quiet=False)
    metric = recipe.metric
    line = f"best val {metric} {result.best['val_metric']:.3f} (epoch {result.best['epoch']:g})"
    if result.test is not None:
        line += f", test {metric} {result.test['metric']:.3f} on {result.test['n']} scenes"
    print(f"{line}; {result.train_time:.0f} s; wrote {Path(args.out) / 'best.safetensors'}")
