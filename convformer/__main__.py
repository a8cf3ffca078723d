"""Command line: `python -m convformer info|predict|detect|segment|train|code|study ...` (see --help)."""
from __future__ import annotations

import argparse
import sys
import warnings

import torch

from . import PRESETS, create, inspect, load_checkpoint, load_image, pick_device, preprocess
from .export.checkpoint import bundled_checkpoint
from .flags import add_config_flags, add_model_flags, overrides, preset_of
from .data import RESIZES, fit
from .axes import format_table, token_note
from .inspection import human
from .coco_cli import add_parser as add_coco_parser
from .references_cli import add_parser as add_references_parser, predict_imagenet
from .export.code import add_parser as add_code_parser
from .inspection.faithfulness_cli import add_parser as add_faithfulness_parser
from .train.cli import add_parser as add_train_parser
from .tasks import cli as tasks_cli
from .study.cli import add_parser as add_study_parser


def _model(args: argparse.Namespace, bundled: bool = False):
    """--checkpoint, else (predict) the bundled checkpoint of --fusion, else a preset with random weights."""
    if args.checkpoint:
        return load_checkpoint(args.checkpoint)
    if bundled:
        path = bundled_checkpoint(args.fusion)
        if path is not None:
            return load_checkpoint(path)
        print(f"note: no bundled checkpoint for {args.fusion!r}; using random weights", file=sys.stderr)
    return create(preset_of(args), **overrides(args, ("num_classes", "img_size"))).eval()


def info(args: argparse.Namespace) -> None:
    model = _model(args)
    _, h, w = model.pretrained_cfg["input_size"]
    x = torch.zeros(args.batch, model.config.in_chans, h, w)
    if args.image:  # the table for this image's real grid (its aspect kept unless --resize squash)
        image = load_image(args.image)
        print(f"input: {fit(image.size, model, args.resize).message()}")
        x = preprocess(image, model, args.resize).cpu().expand(args.batch, -1, -1, -1)
    result = inspect(model, x)
    print(f"{model.pretrained_cfg.get('architecture', model.config.fusion)}: fusion={model.config.fusion}")
    print(format_table(result.shapes, human))
    print(token_note(result.shapes))


def predict(args: argparse.Namespace) -> None:
    if args.weights == "imagenet":
        return predict_imagenet(args)
    model = _model(args, bundled=True).to(pick_device(args.device))
    image = load_image(args.image)
    print(f"input: {fit(image.size, model, args.resize).message()}", file=sys.stderr)
    with torch.inference_mode():
        probs = model(preprocess(image, model, args.resize)).softmax(-1)[0]
    classes = getattr(model, "meta", {}).get("classes") or [str(i) for i in range(len(probs))]
    top = probs.topk(min(args.top_k, len(probs)))
    for p, i in zip(top.values.tolist(), top.indices.tolist()):
        print(f"{p:7.2%}  {classes[i]}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m convformer", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("info", help="print the shape table: input to output, params, FLOPs")
    add_model_flags(p, presets=sorted(PRESETS))
    add_config_flags(p, ("img_size", "num_classes"))
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--image", help="the table for this image, resized as predict does (its aspect kept)")
    p.add_argument("--resize", choices=RESIZES, default="keep", help="with --image: keep (default) or squash")
    p.set_defaults(func=info)
    tasks_cli.attach(p, tasks_cli.info_task)
    p = sub.add_parser("predict", help="print the top-k classes for an image")
    p.add_argument("image")
    add_model_flags(p, fusion_help="uses the bundled checkpoint if any", preset_help=None,
                    checkpoint_help="a .safetensors checkpoint (local path or hf://owner/repo/file)")
    p.add_argument("--device", help="cpu, cuda, mps (default: $CONVFORMER_DEVICE, else the best available)")
    p.add_argument("--top-k", type=int, default=5)
    p.add_argument("--resize", choices=RESIZES, default="keep",
                   help="keep: short side to the input size, aspect kept (default); squash: exactly the input size")
    p.add_argument("--weights", choices=("bundled", "imagenet"), default="bundled",
                   help="imagenet: the stage's ImageNet-trained timm reference (`references` lists them)")
    p.set_defaults(func=predict)
    tasks_cli.attach(add_train_parser(sub), tasks_cli.train_task_command)
    tasks_cli.attach(add_code_parser(sub), tasks_cli.code_task)
    tasks_cli.add_parsers(sub)  # detect, segment
    add_references_parser(sub)
    add_faithfulness_parser(sub)
    add_coco_parser(sub)  # after the tasks' `detect`, if any: it adds --weights coco to it
    add_study_parser(sub)
    args = parser.parse_args(argv)
    with warnings.catch_warnings():  # a warning is one line, as an error is (restored when the command ends)
        warnings.showwarning = lambda message, *_, **__: print(f"warning: {message}", file=sys.stderr)
        try:
            args.func(args)
        except ValueError as e:  # bad config, image or checkpoint: a message, not a traceback
            print(f"error: {e}", file=sys.stderr)
            return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
