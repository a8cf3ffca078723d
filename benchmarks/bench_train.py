"""The training loop's cost: `fit()` against a bare forward + backward + optimizer step loop, same model,
same optimizer, same batches, same device, interleaved rounds.

    python -m benchmarks.bench_train [--threads 2] [--device cpu|cuda] [--fusion mid] [--quick]

The model and batch are a recipe's (`convformer.train.recipes.RECIPES[fusion]`, default: the Train tab's default). `fit` runs one epoch
of the recipe's data with everything it does (shuffling, uint8 -> float, augmentation, label smoothing,
gradient clipping, the schedule, progress reports, the evaluation after the epoch); its images/s counts the
whole call. The bare loop runs the same number of steps over the same batches already as float tensors
(forward, cross-entropy, backward, the recipe's optimizer step: AdamW, or Muon + AdamW; bf16 autocast on CUDA as
`fit` does). Ratio = fit / bare
(target >= 0.9). Also on CUDA with the recipe's settings: the whole default run's time and accuracy.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch
import torch.nn.functional as F


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def bare_loop(model: torch.nn.Module, batches: list[tuple[torch.Tensor, torch.Tensor]], cfg: Any,
              device: torch.device) -> float:
    """Seconds for one pass of forward + backward + optimizer step over `batches` (already on `device`), with
    the optimizers `fit` builds for `cfg` (AdamW, or Muon + AdamW), at its peak lr and without a schedule."""
    from convformer.train import optimizers
    opts = optimizers(model, cfg)
    amp = device.type == "cuda"
    model.train()
    _sync(device)
    start = time.perf_counter()
    for x, y in batches:
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
            loss = F.cross_entropy(model(x), y)
        for opt in opts:
            opt.zero_grad(set_to_none=True)
        loss.backward()
        for opt in opts:
            opt.step()
    _sync(device)
    return time.perf_counter() - start


def run(fusion: str | None = None, device: str = "cpu", rounds: int = 3, train_size: int | None = None,
        val_size: int | None = None, log=print) -> dict[str, Any]:
    """fit() vs bare loop images/s for the recipe's model and batch; on CUDA also the full default run."""
    from convformer.data.datasets import make_datasets
    from convformer.model import ConvFormer
    from convformer.train.recipes import DEFAULT, RECIPES
    from convformer.train import fit
    fusion = fusion or DEFAULT
    recipe = RECIPES[fusion]
    dev = torch.device(device)
    n = train_size or recipe.train_size
    data = make_datasets("shapes", recipe.img_size, train_size=n, val_size=val_size or recipe.val_size, test_size=0)
    torch.manual_seed(0)
    model = ConvFormer(recipe.model_config()).to(dev)
    state = {k: v.clone() for k, v in model.state_dict().items()}
    b = recipe.batch_size
    mean = torch.tensor(model.config.mean, device=dev).view(1, 3, 1, 1)
    std = torch.tensor(model.config.std, device=dev).view(1, 3, 1, 1)
    batches = [((data.train.images[i:i + b].to(dev).float() / 255 - mean) / std, data.train.labels[i:i + b].to(dev))
               for i in range(0, n, b)]
    cfg = recipe.train_config(epochs=1, warmup_epochs=0.5, device=device, progress_bar=False)
    events = []
    bare_loop(model, batches[:3], cfg, dev)  # warm-up: kernels, allocator, oneDNN primitives
    fit_s, bare_s = [], []
    for r in range(rounds):
        for which in (("fit", "bare") if r % 2 == 0 else ("bare", "fit")):
            model.load_state_dict(state)
            if which == "bare":
                bare_s.append(bare_loop(model, batches, cfg, dev))
            else:
                _sync(dev)
                t = time.perf_counter()
                result = fit(model, data.train, data.val, cfg, progress=events.append)
                _sync(dev)
                fit_s.append(time.perf_counter() - t)
                train_s = result.history[-1]["time"]
        log(f"  round {r + 1}: fit {n / fit_s[-1]:.0f} images/s, bare {n / bare_s[-1]:.0f} images/s")
    fit_ips, bare_ips = n / statistics.median(fit_s), n / statistics.median(bare_s)
    row = {"fusion": fusion, "optimizer": cfg.optimizer, "device": torch.cuda.get_device_name(0) if dev.type == "cuda" else "cpu",
           "threads": torch.get_num_threads(), "img_size": recipe.img_size, "batch_size": b, "images": n,
           "fit_images_per_s": round(fit_ips, 1), "bare_images_per_s": round(bare_ips, 1),
           "ratio": round(fit_ips / bare_ips, 3), "fit_s": fit_s, "bare_s": bare_s,
           "eval_share": round(1 - train_s / fit_s[-1], 3) if fit_s else None}
    if dev.type == "cuda" and train_size is None:  # the default run itself, on the GPU with bf16 autocast
        torch.manual_seed(0)
        full = make_datasets("shapes", recipe.img_size, train_size=recipe.train_size, val_size=recipe.val_size)
        _sync(dev)
        t = time.perf_counter()
        res = fit(ConvFormer(recipe.model_config()), full.train, full.val, recipe.train_config(
            device=device, progress_bar=False))
        _sync(dev)
        row["default_run"] = {"seconds": round(time.perf_counter() - t, 2), "best_val_acc": res.best["val_acc"],
                              "history": [(round(h["time"], 2), round(h["val_acc"], 4)) for h in res.history]}
    return row


def table(rows: list[dict[str, Any]]) -> str:
    lines = ["| fusion | device | threads | px | batch | fit images/s | bare images/s | fit / bare |",
             "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['fusion']} | {r['device']} | {r['threads']} | {r['img_size']} | {r['batch_size']} | "
                     f"{r['fit_images_per_s']:.0f} | {r['bare_images_per_s']:.0f} | {r['ratio']:.2f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.bench_train", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--fusion", help="whose recipe (default: the Train tab's default)")
    p.add_argument("--device", nargs="+", default=None, help="default: cpu, and cuda when present")
    p.add_argument("--threads", type=int, help="torch CPU threads (default: all cores)")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--quick", action="store_true", help="a small epoch (CI smoke; numbers mean nothing)")
    p.add_argument("--out", help="JSON file")
    a = p.parse_args(argv)
    if a.threads:
        torch.set_num_threads(a.threads)
    devices = a.device or (["cpu", "cuda"] if torch.cuda.is_available() else ["cpu"])
    rows = [run(a.fusion, d, 1 if a.quick else a.rounds, 512 if a.quick else None, 200 if a.quick else None)
            for d in devices]
    print(table(rows))
    if a.out:
        Path(a.out).write_text(json.dumps(rows, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
