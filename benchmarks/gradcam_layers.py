"""Where Grad-CAM lands, per conv layer of each bundled checkpoint: the share of held-out Shapes images whose
Grad-CAM peak lies on the object (the pointing game of Zhang et al. 2016), and the share of the map's mass on
the object, against the object's share of the image (what a peak placed at random would score).

    python -m benchmarks.gradcam_layers --images 200        # the table in benchmarks/NOTES.md section 13

The images are the test split at seed 4242 (the Compare tab's; the checkpoints were trained on seed 0's
train split), at the checkpoints' 64 px; Grad-CAM explains the predicted class, upsampled to the image as
the app draws it, and the peak is its brightest pixel.
"""
from __future__ import annotations

import argparse
import json

import numpy as np
import torch
import torch.nn.functional as F

from convformer.data import shapes
from convformer.export.checkpoint import bundled_checkpoint, load_checkpoint
from convformer.data import preprocess
from convformer.inspection import conv_layers, default_cam_layers, inspect


def score(fusion: str, n: int, seed: int = 4242) -> dict[str, dict[str, float]]:
    """layer -> {"peak": share of peaks on the object, "mass": mean share of the map on it, "chance": mean
    object area share, "correct": accuracy}, over `n` test images."""
    model = load_checkpoint(bundled_checkpoint(fusion)).eval()
    layers = conv_layers(model)
    hits = {name: [] for name in layers}
    mass = {name: [] for name in layers}
    area, correct = [], []
    for i in range(n):
        img, label, mask = shapes.render_with_mask(i, "test", 64, seed)
        x = preprocess(img, model)
        r = inspect(model, x, cam_class="pred", flops=False, cam_layers=layers)
        on = torch.from_numpy(mask) > 0.5
        area.append(float(on.float().mean()))
        correct.append(int(r.logits.argmax()) == label)
        for name in layers:
            cam = F.interpolate(r.cam[name][None], size=on.shape, mode="bilinear", align_corners=False)[0, 0]
            hits[name].append(bool(on.flatten()[cam.flatten().argmax()]))
            mass[name].append(float(cam[on].sum() / cam.sum().clamp_min(1e-12)))
    return {name: {"peak": float(np.mean(hits[name])), "mass": float(np.mean(mass[name])),
                   "chance": float(np.mean(area)), "correct": float(np.mean(correct)),
                   "default": name in default_cam_layers(model)} for name in layers}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--images", type=int, default=200)
    ap.add_argument("--fusions", nargs="+", default=["early", "mid", "late", "cnn"])
    ap.add_argument("--out", default="")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    table = {f: score(f, args.images) for f in args.fusions}
    print("| fusion | layer | peak on object | map mass on object | object area (chance) | default |")
    print("|---|---|---|---|---|---|")
    for fusion, rows in table.items():
        for name, s in rows.items():
            print(f"| {fusion} | `{name}` | {100 * s['peak']:.0f} % | {100 * s['mass']:.0f} % | "
                  f"{100 * s['chance']:.0f} % | {'**yes**' if s['default'] else ''} |")
    if args.out:
        with open(args.out, "w") as f:
            json.dump(table, f, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
