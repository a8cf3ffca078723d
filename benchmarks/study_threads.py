"""Training images per second of the study's early model (32 px, batch 64, AdamW) on 1 and on 2 torch threads,
interleaved in one process: `python -m benchmarks.study_threads [--rounds 2]`. On a quiet 2-core machine two
threads are faster; on one shared by many processes a team of two waits at every OpenMP barrier for a partner
the scheduler has put aside (NOTES section 15)."""
from __future__ import annotations

import argparse
import json
import os
import time

import torch
import torch.nn.functional as F

from convformer.model import ConvFormer
from convformer.study.protocol import MODELS


def images_per_s(threads: int, steps: int = 10, batch: int = 64) -> float:
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    model = ConvFormer(MODELS["early"])
    opt = torch.optim.AdamW(model.parameters())
    x, y = torch.randn(batch, 3, 32, 32), torch.randint(0, 10, (batch,))
    for i in range(steps + 3):
        if i == 3:
            start = time.perf_counter()
        loss = F.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return steps * batch / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    rows = [{"round": r, "threads": t, "images_per_s": round(images_per_s(t), 1), "load": os.getloadavg()[0]}
            for r in range(args.rounds) for t in (1, 2)]
    print(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
