"""`python -m convformer faithfulness --fusion F [--n 200]`: every map method of a fusion stage's model scored on
N held-out Shapes images (test split; the renderer knows each object's mask): pointing game, mask IoU, deletion
and insertion AUC, sanity-check Spearman (convformer.inspection.faithfulness)."""
from __future__ import annotations

import argparse
import json
import time

import torch

from . import faithfulness as fa
from ..export.checkpoint import bundled_checkpoint, load_checkpoint
from ..config import FUSIONS
from ..data import transform
from ..data.shapes import render_with_mask
from ..flags import add_model_flags

HEADER = ("method", "pointing", "mask IoU", "deletion AUC ↓", "insertion AUC ↑", "sanity ρ ↓")


def shapes_batch(model: torch.nn.Module, n: int, start: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """N test-split Shapes renders at the model's input size, preprocessed (N, C, H, W), and their object
    masks (N, H, W) in [0, 1]."""
    _, h, w = model.pretrained_cfg["input_size"]
    prep = transform(model, (h, w))
    images, masks = [], []
    for i in range(start, start + n):
        image, _, mask = render_with_mask(i, "test", (h, w))
        images.append(prep(image))
        masks.append(torch.from_numpy(mask))
    return torch.stack(images), torch.stack(masks)


def table(scores: dict[str, fa.Score]) -> list[str]:
    """The scores as Markdown table rows (header first)."""
    rows = ["| " + " | ".join(HEADER) + " |", "|" + "---|" * len(HEADER)]
    for m, s in scores.items():
        rows.append(f"| {m} | {s.pointing:.2f} | {s.iou:.2f} | {s.deletion:.3f} | {s.insertion:.3f} | {s.sanity:.2f} |")
    return rows


def run(args: argparse.Namespace) -> None:
    if args.n < 1 or args.steps < 1 or args.sanity < 0:
        raise ValueError(f"--n and --steps must be at least 1 and --sanity at least 0, got {args.n}, {args.steps}, "
                         f"{args.sanity}")
    fusions = FUSIONS if args.fusion == "all" else (args.fusion,)
    out, start = {}, time.perf_counter()
    for fusion in fusions:
        path = args.checkpoint or bundled_checkpoint(fusion)
        if path is None:
            raise ValueError(f"no bundled checkpoint for {fusion!r}: pass --checkpoint")
        model = load_checkpoint(path).eval()
        t0 = time.perf_counter()
        images, masks = shapes_batch(model, args.n)
        scores = fa.evaluate(model, images, masks, steps=args.steps, baseline=args.baseline,
                             sanity_images=args.sanity)
        print(f"\n{fusion} ({args.n} Shapes test images, {args.steps} steps, baseline {args.baseline}; "
              f"{time.perf_counter() - t0:.1f} s)")
        print("\n".join(table(scores)))
        out[fusion] = {m: vars(s) for m, s in scores.items()}
        if getattr(model, "merge", None) is not None:
            with torch.no_grad():
                target = torch.cat([model(images[i:i + 256]).argmax(-1) for i in range(0, len(images), 256)])
            branches = fa.branch_report(model, images, target, scores)
            out[fusion]["branches"] = branches
            print("branches: " + "; ".join(f"{b} {v['share']:.0%} of the logit (mean {v['logit']:+.2f}), deletion "
                                           f"AUC with its map ({fa.BRANCH_MAPS[b]}) {v['deletion']:.3f}"
                                           for b, v in branches.items()))
    print(f"\ntotal {time.perf_counter() - start:.1f} s")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(out, f, indent=1)


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("faithfulness", help="score every map method (pointing game, mask IoU, deletion / insertion "
                                            "AUC, sanity check) on held-out Shapes images")
    add_model_flags(p, more_fusions=("all",), fusion_help="the bundled checkpoint of this stage", preset_help=None,
                    checkpoint_help="a .safetensors checkpoint instead of the bundled one")
    p.add_argument("--n", type=int, default=200, help="images (test split of Shapes), default 200")
    p.add_argument("--steps", type=int, default=8, help="deletion / insertion steps, default 8")
    p.add_argument("--baseline", choices=fa.BASELINES, default="mean", help="what removed pixels become")
    p.add_argument("--sanity", type=int, default=16, help="images for the sanity check (0: skip), default 16")
    p.add_argument("--json", help="also write the scores to this JSON file")
    p.set_defaults(func=run)
