"""One run of the study: a fixed number of steps of one model on one training split, its validation curve,
and its scores on the test split (clean and under high-frequency noise) and on its own training images.

The loop is the study's own (fixed steps whatever the data size, SGD as well as AdamW, a validation point every
`eval_every` steps), built from `train`'s parts: the parameter groups, the warm-up + cosine schedule, the
normalisation and `evaluate`. Seeded: the same seed on the same machine gives the same numbers.
"""
from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F

from ..data.datasets import ImageTensors, make_datasets
from ..model import ConvFormer
from ..train.loop import evaluate, lr_factor, normalizer, param_groups
from .protocol import Protocol, RunSpec, model_config

__all__ = ["Splits", "high_frequency_noise", "load_splits", "train_run"]


class Splits(dict):
    """name -> ImageTensors: "train" (the largest size), "val", "test", "test_noisy"."""


def load_splits(p: Protocol) -> Splits:
    """The study's images (rendered once, shared by every run): the training split at the largest size (smaller
    sizes are its first n images, balanced since label = index % 10), validation, test, and test + noise."""
    data = make_datasets("shapes", model_config("mid").img_size, train_size=max(p.sizes), val_size=p.val_size,
                         test_size=p.test_size, seed=p.data_seed)
    noisy = high_frequency_noise(data.test.images, p.noise_std, seed=p.data_seed)
    return Splits(train=data.train, val=data.val, test=data.test,
                  test_noisy=ImageTensors(noisy, data.test.labels, data.classes))


def high_frequency_noise(images: torch.Tensor, std: float, seed: int = 0, cutoff: float = 0.5) -> torch.Tensor:
    """uint8 images (N, C, H, W) plus Gaussian noise keeping only spatial frequencies above `cutoff` x Nyquist
    (as Park & Kim 2022 probe attention's low-pass behaviour), scaled to `std` in [0, 1] units; uint8 out."""
    gen = torch.Generator().manual_seed(seed)
    noise = torch.randn(images.shape, generator=gen)
    fy = torch.fft.fftfreq(images.shape[-2]).abs()[:, None] * 2  # 1 = Nyquist
    fx = torch.fft.rfftfreq(images.shape[-1])[None, :] * 2
    keep = (torch.maximum(fy, fx) > cutoff).float()
    noise = torch.fft.irfft2(torch.fft.rfft2(noise) * keep, s=images.shape[-2:])
    noise = noise / noise.std() * std
    return (images.float() / 255 + noise).clamp(0, 1).mul(255).round().to(torch.uint8)


def _optimizer(model: ConvFormer, spec: RunSpec, p: Protocol) -> torch.optim.Optimizer:
    if spec.optimizer == "sgd":
        return torch.optim.SGD(param_groups(model, 5e-4), lr=p.sgd_lr, momentum=0.9, nesterov=True)
    if spec.optimizer == "adamw":
        return torch.optim.AdamW(param_groups(model, p.weight_decay), lr=p.lr)
    raise ValueError(f"optimizer={spec.optimizer!r} is not allowed: expected adamw or sgd")


def train_run(spec: RunSpec, p: Protocol, splits: Splits, device: torch.device | None = None,
              progress: Callable[[dict[str, Any]], None] | None = None,
              cancel: threading.Event | None = None) -> dict[str, Any] | None:
    """Train `spec` under `p`; the run's record (curve, steps / seconds to the threshold, scores), or None if
    `cancel` was set before the end. `progress(info)` gets {"step", "steps", "val_acc"} at every curve point."""
    device = device or torch.device("cpu")
    cfg = model_config(spec.model)
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(spec.seed)
        model = ConvFormer(cfg).to(device).train()
    train = splits["train"]
    if spec.train_size > len(train):
        raise ValueError(f"train_size={spec.train_size} is over the {len(train)} images rendered")
    images, labels = train.images[:spec.train_size], train.labels[:spec.train_size]
    opt = _optimizer(model, spec, p)
    warmup = max(1, round(p.warmup * p.steps))
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: lr_factor(s, p.steps, warmup, 0.01))
    norm, gen = normalizer(model, device), torch.Generator().manual_seed(spec.seed)
    order = torch.empty(0, dtype=torch.long)
    curve, trained = [], 0.0
    for step in range(1, p.steps + 1):
        if len(order) < p.batch_size:  # a new pass over the split, reshuffled; a short tail carries over
            order = torch.cat([order, torch.randperm(spec.train_size, generator=gen)])
        idx, order = order[:p.batch_size], order[p.batch_size:]
        start = time.perf_counter()
        x = norm(images[idx].to(device).float().div_(255))
        loss = F.cross_entropy(model(x), labels[idx].to(device), label_smoothing=p.label_smoothing)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        if device.type == "cuda":
            torch.cuda.synchronize()
        trained += time.perf_counter() - start
        if cancel is not None and cancel.is_set():
            return None
        if step % p.eval_every == 0 or step == p.steps:
            acc = evaluate(model, splits["val"], device=device)["acc"]
            curve.append((step, round(trained, 3), acc))
            if progress is not None:
                progress({"step": step, "steps": p.steps, "val_acc": acc})
    return _scores(model, spec, p, splits, curve=curve, trained=trained, device=device, loss=loss.item())


def _scores(model, spec, p, splits, *, curve, trained, device, loss) -> dict[str, Any]:
    reached = next(((s, t) for s, t, a in curve if a >= p.threshold), (None, None))
    own = ImageTensors(splits["train"].images[:min(spec.train_size, p.train_eval_size)],
                       splits["train"].labels[:min(spec.train_size, p.train_eval_size)], [])
    test = evaluate(model, splits["test"], device=device)["acc"]
    return {"model": spec.model, "seed": spec.seed, "train_size": spec.train_size, "optimizer": spec.optimizer,
            "role": spec.role, "curve": curve, "steps_to": reached[0], "seconds_to": reached[1],
            "seconds": round(trained, 3), "final_loss": loss, "test_acc": test,
            "noisy_acc": evaluate(model, splits["test_noisy"], device=device)["acc"],
            "train_acc": evaluate(model, own, device=device)["acc"],
            "half_acc": next(a for s, _, a in curve if s >= p.steps // 2)}
