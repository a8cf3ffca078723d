"""The cost of `python -m convformer faithfulness`: every fusion stage's bundled checkpoint scored on N held-out
Shapes images (all methods, deletion / insertion, pointing game, mask IoU, sanity check), against a reference
measured in the same run: the bare forward passes its deletion / insertion curves need (the same number of
images, same batches, `inference_mode`), so ratio = whole run / bare forwards.

    python -m benchmarks.bench_faithfulness [--n 200] [--threads 2] [--out results.json]

Target (issue 25): all five stages at N = 200 within 5 minutes on 2 CPU cores. The load average is recorded
at the start and the end: on a shared machine the wall clock means little, the ratio more.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch


def forwards_needed(n: int, methods: int, steps: int) -> int:
    """Images through the model for the curves: the image and the baseline once, then per method and image
    2 x (steps - 1) perturbed ones."""
    return n * (2 + methods * 2 * (steps - 1))


def measure(fusion: str, n: int, steps: int, sanity: int) -> dict:
    from convformer.inspection import faithfulness as fa
    from convformer.export.checkpoint import bundled_checkpoint, load_checkpoint
    from convformer.inspection.faithfulness_cli import shapes_batch
    model = load_checkpoint(bundled_checkpoint(fusion)).eval()
    images, masks = shapes_batch(model, n)
    start = time.perf_counter()
    scores = fa.evaluate(model, images, masks, steps=steps, sanity_images=sanity)
    whole = time.perf_counter() - start
    count = forwards_needed(n, len(scores), steps)
    reps = -(-count // n)
    target = torch.zeros(n * reps, dtype=torch.long)
    start = time.perf_counter()
    fa.probabilities(model, images.repeat(reps, 1, 1, 1), target)
    bare = (time.perf_counter() - start) * count / (n * reps)
    return {"fusion": fusion, "seconds": whole, "bare_forward_seconds": bare, "ratio": whole / bare,
            "forwards": count, "scores": {m: vars(s) for m, s in scores.items()}}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=200)
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--sanity", type=int, default=16)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--fusions", nargs="+", default=["early", "mid", "late", "cnn", "vit"])
    parser.add_argument("--out")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    load_start = os.getloadavg()
    rows = [measure(f, args.n, args.steps, args.sanity) for f in args.fusions]
    total = sum(r["seconds"] for r in rows)
    print(f"threads {args.threads}, load average at start {load_start[0]:.1f}, at end {os.getloadavg()[0]:.1f}")
    print("| fusion | whole run (s) | bare forwards (s) | ratio | forwards |\n|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['fusion']} | {r['seconds']:.1f} | {r['bare_forward_seconds']:.1f} | {r['ratio']:.2f} | "
              f"{r['forwards']} |")
    print(f"total {total:.1f} s for {len(rows)} stages at N = {args.n} (target: 300 s on 2 quiet cores)")
    if args.out:
        Path(args.out).write_text(json.dumps({"threads": args.threads, "load": [load_start, os.getloadavg()],
                                              "n": args.n, "steps": args.steps, "rows": rows}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
