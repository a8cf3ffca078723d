"""`python -m convformer detect PHOTO --weights coco`: DETR pretrained on COCO (convformer.coco_detr) on the
command line, one line per box: class, score, x1 y1 x2 y2 in the photo's pixels (tab-separated: COCO names
have spaces). `add_parser` joins the `detect` subcommand when the tasks' CLI (issue 23) has registered it,
routing `--weights coco` here and every other weights choice to the tasks' own command; else it adds it."""
from __future__ import annotations

import argparse

from .coco_detr import THRESHOLD


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.choices.get("detect")
    if p is None:
        p = sub.add_parser("detect", help="print the boxes in a photo: class, score, x1 y1 x2 y2 in its pixels")
        p.add_argument("image")
        p.add_argument("--threshold", type=float, default=THRESHOLD, help="keep boxes scoring above this")
    others = p.get_default("func")  # the tasks' own detect, when registered
    choices = ("bundled", "coco") if others else ("coco",)
    p.add_argument("--weights", choices=choices, default=choices[0],
                   help="coco: DETR ResNet-50 pretrained on COCO (facebook/detr-resnet-50, through transformers)")
    p.set_defaults(func=lambda args: detect(args) if args.weights == "coco" else others(args))


def detect(args: argparse.Namespace) -> None:
    from .coco_detr import detect as detect_coco, load
    from .data.images import load_image
    from .references import WeightsUnavailable

    image = load_image(args.image)
    try:
        found = detect_coco(load(), image, args.threshold)
    except WeightsUnavailable as e:  # one line (the CLI's ValueError path), not a traceback
        raise ValueError(str(e)) from None
    for d in found:
        print(d.line())
