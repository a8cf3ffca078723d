"""`python -m convformer references` and `predict PHOTO --weights imagenet`: the ImageNet references
(convformer.references) from the command line."""
from __future__ import annotations

import argparse
import sys

import torch

from .data import load_image, pick_device
from .references import REFERENCES, WeightsUnavailable, cached_weights, load_reference, params, preprocess, top_k


def references(args: argparse.Namespace) -> None:
    """One line per fusion stage: stage, timm name with its pretrained tag, params, whether it is cached."""
    for fusion, ref in REFERENCES.items():
        cached = all(cached_weights(name) for name in ref.names)
        print(f"{fusion:<6} {ref.label:<62} {params(fusion) / 1e6:6.2f} M params"
              f"{'  (cached)' if cached else ''}")


def _say_download(name: str, size: int | None) -> None:
    mb = f" ({size / 1e6:.0f} MB)" if size else ""
    print(f"downloading {name}{mb} into the Hugging Face cache, once", file=sys.stderr)


def predict_imagenet(args: argparse.Namespace) -> None:
    """Top-k ImageNet labels of a photo from the fusion stage's reference; one line and exit 1 when the
    weights cannot be had."""
    if args.checkpoint:
        raise ValueError("--checkpoint and --weights imagenet exclude each other")
    image = load_image(args.image)  # a bad image fails before any download
    try:
        model = load_reference(args.fusion, on_download=_say_download)
    except WeightsUnavailable as e:
        sys.exit(f"error: {e}")
    model = model.to(pick_device(args.device))
    with torch.inference_mode():
        probs = model(preprocess(image, model).to(next(model.parameters()).device)).softmax(-1)[0]
    for label, p in top_k(probs.cpu(), args.top_k):
        print(f"{p:7.2%}  {label}")


def add_parser(sub) -> None:
    p = sub.add_parser("references", help="list the ImageNet-trained reference of every fusion stage")
    p.set_defaults(func=references)
