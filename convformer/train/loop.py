"""Training: a seeded AdamW loop with warm-up + cosine (the command line is in `cli.py`).

Data comes from `datasets.make_datasets`, held in memory as uint8 tensors; augmentation (a mild random
resized crop and a horizontal flip, one `affine_grid` / `grid_sample` call per batch) runs on batched
tensors, on the training device.
The recipe follows DeiT (Touvron et al. 2021) in miniature: AdamW without weight decay on norms, biases
and embeddings, linear warm-up then a cosine schedule per step, label smoothing. With `optimizer="muon"` the
hidden weight matrices (the transformer blocks' linear layers) are trained by Muon instead (Jordan et al. 2024,
`torch.optim.Muon` batched over matrices of one shape in `muon.py`, its step scaled to AdamW's update size as
in Liu et al. 2025, "Muon is Scalable for LLM Training", so that one learning rate serves both); everything
else stays with AdamW (fused: one kernel for all parameters, on the CPU as on a GPU).

`fit` is what the app's Train tab calls: `progress` gets a dict after every step and epoch, `cancel`
(a threading.Event) is checked every step, and the best model by validation accuracy is kept in memory
and, with `out_dir`, written as a checkpoint with its metrics and training curves.

On a GPU nothing in a step waits for the device: the training split is copied there once, the step losses
stay there and are read back together every `read_loss_every` steps (16 by default; the CPU reads every
step, where reading costs nothing), and the progress reports of those steps follow in one go.
"""
from __future__ import annotations

import json
import math
import os
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn
from torch.utils.data import Dataset, DistributedSampler

from ..export.checkpoint import save_checkpoint
from ..data.datasets import Datasets, ImageTensors, make_datasets, materialize
from ..model import ConvFormer
from .muon import Muon

__all__ = ["Datasets", "ImageTensors", "TrainConfig", "TrainResult", "evaluate", "fit",
           "make_datasets", "materialize", "plot_curves"]


OPTIMIZERS = ("adamw", "muon")


@dataclass
class TrainConfig:
    """How to train. Limits (`max_epochs`, `max_images`, `time_limit`) keep a web session bounded."""

    epochs: int = 10                   # passes over the training split
    lr: float = 2e-3                   # peak learning rate (AdamW, and Muon), reached after warm-up
    min_lr: float = 1e-5               # end of the cosine schedule
    weight_decay: float = 0.05         # not applied to norms, biases, pos_embed, cls_token
    optimizer: str = "adamw"           # adamw | muon: Muon on the hidden weight matrices, AdamW on the rest
    batch_size: int = 128              # per process
    warmup_epochs: float = 1.0         # linear warm-up, then cosine, stepped every batch
    label_smoothing: float = 0.1
    grad_clip: float | None = 1.0      # max gradient norm; None: no clipping
    seed: int = 0                      # same seed, same device -> same loss curve
    augment: bool = True               # mild random resized crop (+ flip) on the training batches
    crop_scale: tuple[float, float] = (0.75, 1.0)  # area fraction kept by the random crop
    hflip: bool = True                 # random horizontal flip; turn off when mirroring changes the class
    num_workers: int = 0               # decode workers when loading folders; training reads memory
    amp: bool = True                   # mixed precision (bfloat16 autocast), used only on CUDA
    channels_last: bool = False        # NHWC model and batches (oneDNN / cuDNN convolutions prefer it)
    device: str | None = None          # default: $CONVFORMER_DEVICE, CUDA, MPS, then CPU
    distributed: bool = False          # DDP; also on when the environment has WORLD_SIZE > 1 (torchrun)
    eval_batch_size: int = 512
    progress_bar: bool = True          # tqdm on the terminal (rank 0)
    curves: bool = True                # with out_dir: also draw curves.png at the end (imports matplotlib)
    max_epochs: int = 300              # refuse longer runs
    max_images: int = 200_000          # refuse larger training splits
    time_limit: float | None = None    # seconds; stop (like cancel) when reached
    target_acc: float | None = None    # stop at the end of the first epoch whose validation accuracy reaches it
    read_loss_every: int | None = None  # steps between loss read-backs (and progress); None: 1 on CPU, 16 on GPU

    def __post_init__(self) -> None:
        self.crop_scale = tuple(self.crop_scale)
        checks = {  # field: (ok, what is allowed)
            "epochs": (1 <= self.epochs <= self.max_epochs, f"an integer in [1, max_epochs={self.max_epochs}]"),
            "lr": (0 < self.lr < 10, "a number in (0, 10)"),
            "min_lr": (0 <= self.min_lr <= self.lr, "a number in [0, lr]"),
            "weight_decay": (0 <= self.weight_decay < 10, "a number in [0, 10)"),
            "optimizer": (self.optimizer in OPTIMIZERS, f"one of {OPTIMIZERS}"),
            "batch_size": (1 <= self.batch_size <= 65536, "an integer in [1, 65536]"),
            "warmup_epochs": (0 <= self.warmup_epochs <= self.epochs, "a number in [0, epochs]"),
            "label_smoothing": (0 <= self.label_smoothing < 1, "a number in [0, 1)"),
            "grad_clip": (self.grad_clip is None or self.grad_clip > 0, "None or a positive number"),
            "seed": (0 <= self.seed < 2 ** 32, "an integer in [0, 2**32)"),
            "crop_scale": (len(self.crop_scale) == 2 and 0 < self.crop_scale[0] <= self.crop_scale[1] <= 1,
                           "(low, high) with 0 < low <= high <= 1"),
            "num_workers": (0 <= self.num_workers <= 64, "an integer in [0, 64]"),
            "eval_batch_size": (self.eval_batch_size >= 1, "a positive integer"),
            "time_limit": (self.time_limit is None or self.time_limit > 0, "None or a positive number of seconds"),
            "target_acc": (self.target_acc is None or 0 < self.target_acc <= 1, "None or a number in (0, 1]"),
            "read_loss_every": (self.read_loss_every is None or 1 <= self.read_loss_every <= 10_000,
                                "None or an integer in [1, 10000]"),
        }
        for name, (ok, allowed) in checks.items():
            if not ok:
                raise ValueError(f"{name}={getattr(self, name)!r} is not allowed: expected {allowed}")


@dataclass
class TrainResult:
    """What `fit` returns. `model` holds the best weights (by validation accuracy)."""

    model: ConvFormer
    history: list[dict[str, float]]    # one entry per epoch: epoch, train_loss, val_loss, val_acc, lr, time
    best: dict[str, float]             # the best epoch's entry
    step_losses: list[float]
    train_time: float                  # seconds
    cancelled: bool                    # stopped by `cancel` or `time_limit`
    checkpoint: Path | None = None     # out_dir/best.safetensors
    test: dict[str, Any] | None = None  # `evaluate` on test_set, if given
    stop: str = "completed"            # why it ended: one of STOPS


STOPS = ("completed", "cancelled", "time_limit", "target_acc")  # every epoch ran; cancel; time_limit; target_acc


def param_groups(model: nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """AdamW groups: weight decay on weight matrices and kernels only, not on norms, biases, embeddings."""
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        skip = p.ndim <= 1 or name.endswith(("pos_embed", "cls_token"))
        (no_decay if skip else decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def optimizers(model: nn.Module, cfg: "TrainConfig") -> list[torch.optim.Optimizer]:
    """[AdamW over `param_groups`], or with cfg.optimizer == "muon" [Muon, AdamW]: Muon takes the 2-D weight
    matrices of the hidden layers (not the classifier, whose rows are per class; conv kernels are 4-D and stay
    with AdamW, as do norms, biases and embeddings)."""
    groups = param_groups(model, cfg.weight_decay)
    head = {id(p) for p in model.get_classifier().parameters()}
    hidden = [p for p in groups[0]["params"] if p.ndim == 2 and id(p) not in head]
    if cfg.optimizer == "adamw" or not hidden:  # a pure CNN has no hidden matrices: AdamW alone
        return [torch.optim.AdamW(groups, lr=cfg.lr, betas=(0.9, 0.999), fused=True)]
    groups[0]["params"] = [p for p in groups[0]["params"] if p.ndim != 2 or id(p) in head]
    return [Muon(hidden, lr=cfg.lr, weight_decay=cfg.weight_decay, adjust_lr_fn="match_rms_adamw"),
            torch.optim.AdamW(groups, lr=cfg.lr, betas=(0.9, 0.999), fused=True)]


def lr_factor(step: int, total: int, warmup: int, floor: float) -> float:
    """Linear warm-up from 1 / warmup to 1 over `warmup` steps, then cosine from 1 down to `floor`."""
    if step < warmup:
        return (step + 1) / warmup
    t = (step - warmup) / max(1, total - warmup)
    return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * min(1.0, t)))


def augment(x: torch.Tensor, gen: torch.Generator, scale: tuple[float, float], hflip: bool) -> torch.Tensor:
    """A random resized crop (area fraction in `scale`, square, anywhere inside) and a horizontal flip per
    image of a float batch (B, C, H, W), in one `grid_sample`. The random numbers come from `gen` (CPU)."""
    b = x.shape[0]
    side = torch.empty(b).uniform_(scale[0], scale[1], generator=gen).sqrt()  # crop side / image side
    shift = (torch.rand(b, 2, generator=gen) * 2 - 1) * (1 - side)[:, None]
    flip = torch.where(torch.rand(b, generator=gen) < 0.5, -1.0, 1.0) if hflip else torch.ones(b)
    theta = torch.zeros(b, 2, 3)
    theta[:, 0, 0], theta[:, 1, 1], theta[:, :, 2] = side * flip, side, shift
    if x.device.type == "cuda":  # a blocking copy from pageable memory would wait for the whole stream
        theta = theta.pin_memory()
    grid = F.affine_grid(theta.to(x.device, x.dtype, non_blocking=True), list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)


def _normalizer(model: ConvFormer, device: torch.device) -> Callable[[torch.Tensor], torch.Tensor]:
    c = model.config.in_chans
    mean, std = torch.tensor(model.config.mean), torch.tensor(model.config.std)
    if c != 3:
        mean, std = mean.mean().repeat(c), std.mean().repeat(c)
    mean, std = mean.view(1, c, 1, 1).to(device), std.view(1, c, 1, 1).to(device)
    return lambda x: (x - mean) / std


RESIDENT_MAX_BYTES = 2 << 30  # a training split up to this size lives on the GPU for the whole run


def _batch_source(data: ImageTensors, device: torch.device) -> tuple[Callable[[torch.Tensor], tuple], bool]:
    """(indices -> (uint8 images, labels) on `device`, resident). On CUDA the split is copied there once
    (resident, up to RESIDENT_MAX_BYTES: then the indices may be on the device too; larger splits go batch by
    batch through pinned memory, without waiting), so a step never waits for a host-to-device copy."""
    if device.type != "cuda":
        return (lambda idx: (data.images[idx].to(device), data.labels[idx].to(device))), False
    if data.images.nbytes + data.labels.nbytes <= RESIDENT_MAX_BYTES:
        images, labels = data.images.to(device), data.labels.to(device)
        return (lambda idx: (images[idx.to(device)], labels[idx.to(device)])), True
    return (lambda idx: (data.images[idx].pin_memory().to(device, non_blocking=True),
                         data.labels[idx].pin_memory().to(device, non_blocking=True))), False


def _check_data(model: ConvFormer, data: ImageTensors, name: str) -> None:
    c, (h, w) = model.config.in_chans, model.config.img_size
    if tuple(data.images.shape[1:]) != (c, h, w):
        raise ValueError(f"{name} images are {tuple(data.images.shape[1:])}, the model takes ({c}, {h}, {w}); "
                         "load them with make_datasets(..., img_size=model.config.img_size)")
    if len(data) and int(data.labels.max()) >= model.config.num_classes:
        raise ValueError(f"{name} has label {int(data.labels.max())}, but the model has num_classes="
                         f"{model.config.num_classes}")


@torch.inference_mode()
def evaluate(model: ConvFormer, data: Dataset, *, batch_size: int = 512, device: str | torch.device | None = None,
             indices: list[int] | None = None) -> dict[str, Any]:
    """Loss, accuracy and confusion matrix (rows: true class) of `model` on `data` (eval mode, no augment).
    `data` is an `ImageTensors` at the model's input size (other datasets are materialized first)."""
    device = torch.device(device) if device is not None else next(model.parameters()).device
    if not isinstance(data, ImageTensors):
        data = materialize(data, model.config.img_size, model.config.in_chans)
    _check_data(model, data, "evaluation data")
    norm, k = _normalizer(model, device), model.config.num_classes
    was_training = model.training
    model.eval()
    idx = torch.arange(len(data)) if indices is None else torch.as_tensor(indices, dtype=torch.long)
    loss, confusion = torch.zeros((), dtype=torch.float64), torch.zeros(k, k, dtype=torch.long)
    for chunk in idx.split(batch_size):
        x = norm(data.images[chunk].to(device).float() / 255)
        y = data.labels[chunk]
        logits = model(x).float().cpu()
        loss += F.cross_entropy(logits, y, reduction="sum").double()
        confusion += torch.bincount(y * k + logits.argmax(1), minlength=k * k).view(k, k)
    model.train(was_training)
    n = int(confusion.sum())
    correct = int(confusion.diag().sum())
    return {"loss": float(loss) / max(n, 1), "acc": correct / max(n, 1), "correct": correct, "n": n,
            "confusion": confusion.tolist()}


def _setup_distributed(cfg: TrainConfig) -> tuple[bool, bool, int, int]:
    """(distributed, created_here, rank, world_size); init_process_group from the torchrun environment."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if not (cfg.distributed or world > 1):
        return False, False, 0, 1
    created = False
    if not dist.is_initialized():
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
        created = True
    return True, created, dist.get_rank(), dist.get_world_size()


def _reduce(values: list[float], device: torch.device, on: bool) -> list[float]:
    if not on:
        return values
    t = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(t)
    return t.tolist()


def fit(model: ConvFormer, train_set: Dataset, val_set: Dataset, cfg: TrainConfig | None = None, *,
        progress: Callable[[dict[str, Any]], None] | None = None, cancel: threading.Event | None = None,
        out_dir: str | Path | None = None, test_set: Dataset | None = None,
        metadata: dict[str, Any] | None = None) -> TrainResult:
    """Train `model` in place on `train_set`, evaluate on `val_set` after every epoch, keep the best.

    Datasets are `ImageTensors` at the model's input size (from `make_datasets`); others are decoded into
    memory first. `progress(info)` is called after every step (info["event"] == "step") and every epoch
    ("epoch"), then once at the end ("done"); info holds epoch, epochs, step, total_steps, loss, lr,
    val_loss, val_acc, best_val_acc, images_per_s, elapsed and the epoch `history` so far.
    Setting `cancel` (or reaching `cfg.time_limit`) stops after the current step, reaching `cfg.target_acc`
    after the epoch; `TrainResult.stop` says which (STOPS); a cancelled run that has
    not finished an epoch is evaluated once, so there is always a best model.
    With `out_dir`, rank 0 writes best.safetensors (+ .json: classes, dataset, metrics, epochs, train time
    and `metadata`), metrics.json and curves.png. With `test_set`, the best model is evaluated on it at
    the end and the test metrics are added to the checkpoint and metrics.json.
    """
    from ..data import pick_device
    cfg = cfg or TrainConfig()
    on_dist, created, rank, world = _setup_distributed(cfg)
    try:
        if on_dist and torch.cuda.is_available():
            device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", rank % torch.cuda.device_count())))
            torch.cuda.set_device(device)
        else:
            device = pick_device(cfg.device)
        train_set, val_set = (d if isinstance(d, ImageTensors) else
                              materialize(d, model.config.img_size, model.config.in_chans,
                                          num_workers=cfg.num_workers) for d in (train_set, val_set))
        _check_data(model, train_set, "train_set")
        _check_data(model, val_set, "val_set")
        if len(train_set) > cfg.max_images:
            raise ValueError(f"the training split has {len(train_set)} images; max_images={cfg.max_images}")
        if len(train_set) == 0 or len(val_set) == 0:
            raise ValueError("the training and validation splits need at least one image each")
        cuda = [device] if device.type == "cuda" else []
        with torch.random.fork_rng(devices=cuda):  # seeds its own RNG; the caller's is restored afterwards
            return _fit(model, train_set, val_set, cfg, device, rank, world, on_dist, progress, cancel,
                        Path(out_dir) if out_dir is not None else None, test_set, metadata or {})
    finally:
        if created:
            dist.destroy_process_group()


def _fit(model, train_set, val_set, cfg, device, rank, world, on_dist, progress, cancel, out_dir, test_set,
         metadata) -> TrainResult:
    torch.manual_seed(cfg.seed)
    gen = torch.Generator().manual_seed(cfg.seed + rank)  # augmentation randomness, per process
    model.to(device).train()
    layout = torch.channels_last if cfg.channels_last else torch.contiguous_format
    model.to(memory_format=layout)
    net = nn.parallel.DistributedDataParallel(model, device_ids=[device] if device.type == "cuda" else None) \
        if on_dist else model
    sampler = DistributedSampler(range(len(train_set)), num_replicas=world, rank=rank, shuffle=True,
                                 seed=cfg.seed, drop_last=False)
    steps_per_epoch = math.ceil(len(sampler) / cfg.batch_size)
    total = steps_per_epoch * cfg.epochs
    warmup = round(cfg.warmup_epochs * steps_per_epoch)
    opts = optimizers(model, cfg)
    opt = opts[-1]  # AdamW: its learning rate is the one reported (every group follows the same schedule)
    floor = cfg.min_lr / cfg.lr
    scheds = [torch.optim.lr_scheduler.LambdaLR(o, lambda s: lr_factor(s, total, warmup, floor)) for o in opts]
    use_amp = cfg.amp and device.type == "cuda"
    amp_dtype = torch.bfloat16 if use_amp and torch.cuda.is_bf16_supported() else torch.float16
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp and amp_dtype == torch.float16)
    norm = _normalizer(model, device)
    val_shard = list(range(rank, len(val_set), world))
    fetch, resident = _batch_source(train_set, device)
    read_every = cfg.read_loss_every or (1 if device.type == "cpu" else 16)
    writer = rank == 0 and out_dir is not None
    classes = list(train_set.classes) or [str(i) for i in range(model.config.num_classes)]

    history: list[dict[str, float]] = []
    step_losses: list[float] = []
    pending: list[tuple[torch.Tensor, float]] = []  # (loss on the device, lr) of the steps not read back yet
    best: dict[str, float] = {}
    best_state: dict[str, torch.Tensor] | None = None
    step, stopped, start, cpu_start = 0, False, time.perf_counter(), time.process_time()
    reason = "completed"
    bar = None
    if cfg.progress_bar and rank == 0:
        from tqdm.auto import tqdm
        bar = tqdm(total=total, desc="train", unit="step", dynamic_ncols=True)

    def info(event: str, epoch: int, at: int | None = None, lr: float | None = None,
             **extra: Any) -> dict[str, Any]:
        elapsed, at = time.perf_counter() - start, step if at is None else at
        return {"event": event, "epoch": epoch, "epochs": cfg.epochs, "step": at, "total_steps": total,
                "loss": step_losses[-1] if step_losses else None,
                "lr": opt.param_groups[0]["lr"] if lr is None else lr,
                "val_loss": history[-1]["val_loss"] if history else None,
                "val_acc": history[-1]["val_acc"] if history else None,
                "best_val_acc": best.get("val_acc"), "elapsed": elapsed,
                "images_per_s": at * cfg.batch_size * world / max(elapsed, 1e-9),
                "history": history, **extra}

    def read_back(epoch: int, losses: list[float]) -> None:
        """The pending steps' losses in one device-to-host copy (the one wait for the GPU), then their
        progress reports, step by step."""
        if not pending:
            return
        values = torch.stack([loss for loss, _ in pending]).tolist()
        first = step - len(values) + 1
        for i, (value, (_, lr)) in enumerate(zip(values, pending)):
            losses.append(value)
            step_losses.append(value)
            if progress is not None and rank == 0:
                progress(info("step", epoch, at=first + i, lr=lr))
        pending.clear()
        if bar is not None:
            bar.update(len(values))
            bar.set_postfix(epoch=epoch, loss=f"{values[-1]:.3f}", refresh=False)

    def end_epoch(epoch: float, losses: list[float]) -> None:
        nonlocal best, best_state
        ev = evaluate(model, val_set, batch_size=cfg.eval_batch_size, device=device, indices=val_shard)
        sums = _reduce([ev["loss"] * ev["n"], ev["correct"], ev["n"], sum(losses), len(losses)], device, on_dist)
        row = {"epoch": epoch, "train_loss": sums[3] / max(sums[4], 1), "val_loss": sums[0] / max(sums[2], 1),
               "val_acc": sums[1] / max(sums[2], 1), "lr": opt.param_groups[0]["lr"], "step": step,
               "time": time.perf_counter() - start}
        history.append(row)
        if not best or row["val_acc"] > best["val_acc"]:
            best = dict(row)
            best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
            if writer:
                _save(model, out_dir, classes, best, history, cfg, metadata, row["time"], None)
        if bar is not None:
            bar.write(f"epoch {epoch:g}: train_loss {row['train_loss']:.4f}  val_loss {row['val_loss']:.4f}  "
                      f"val_acc {row['val_acc']:.2%}")

    for epoch in range(cfg.epochs):
        sampler.set_epoch(epoch)
        order = torch.tensor(list(sampler), dtype=torch.long)
        if resident:
            order = order.to(device)  # one copy per epoch; the batches are then cut on the device
        losses: list[float] = []
        batches = order.split(cfg.batch_size)
        for i, batch in enumerate(batches):
            x, y = fetch(batch)
            x = x.float().div_(255)
            if cfg.augment:
                x = augment(x, gen, cfg.crop_scale, cfg.hflip)
            x = x.contiguous(memory_format=layout)
            with torch.autocast(device.type, dtype=amp_dtype, enabled=use_amp):
                loss = F.cross_entropy(net(norm(x)), y, label_smoothing=cfg.label_smoothing)
            for o in opts:
                o.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            if cfg.grad_clip:
                for o in opts:
                    scaler.unscale_(o)
                nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
            for o in opts:
                scaler.step(o)
            scaler.update()
            for sched in scheds:
                sched.step()
            step += 1
            pending.append((loss.detach(), opt.param_groups[0]["lr"]))
            read = len(pending) >= read_every or i == len(batches) - 1
            if read:
                read_back(epoch + 1, losses)
            over_time = cfg.time_limit is not None and time.perf_counter() - start > cfg.time_limit
            stop = bool(cancel is not None and cancel.is_set()) or over_time
            if on_dist:  # every rank stops at the same step: agreed (one wait) where the losses are read
                stop = read and _reduce([float(stop)], device, on_dist)[0] > 0
            if stop:
                read_back(epoch + 1, losses)
                stopped, reason = True, "time_limit" if over_time else "cancelled"
                break
        if not stopped or not history:
            end_epoch(epoch + 1 if not stopped else round(epoch + len(losses) / steps_per_epoch, 3), losses)
            if progress is not None and rank == 0:
                progress(info("epoch", epoch + 1))
        if not stopped and cfg.target_acc is not None and history[-1]["val_acc"] >= cfg.target_acc \
                and epoch + 1 < cfg.epochs:
            reason = "target_acc"  # every rank has the same (reduced) accuracy: they stop together
            break
        if stopped:
            break
    if bar is not None:
        bar.close()
    train_time = time.perf_counter() - start
    metadata = {**metadata, "cpu_time": round(time.process_time() - cpu_start, 1)}  # all threads of this process
    model.load_state_dict(best_state)
    model.eval()
    test, timing = None, {"train": train_time}
    if test_set is not None:
        test = evaluate(model, test_set, batch_size=cfg.eval_batch_size, device=device)
    timing["test"] = time.perf_counter() - start - train_time
    checkpoint = None
    if writer:
        checkpoint = _save(model, out_dir, classes, best, history, cfg, metadata, train_time, test,
                           step_losses=step_losses, cancelled=stopped, stop=reason)
    timing["save"] = time.perf_counter() - start - train_time - timing["test"]
    result = TrainResult(model, history, best, step_losses, train_time, stopped, checkpoint, test, reason)
    if progress is not None and rank == 0:
        progress(info("done", int(math.ceil(history[-1]["epoch"])), cancelled=stopped, test=test, stop=reason,
                      timing=timing))
    return result


def _save(model, out_dir: Path, classes, best, history, cfg, metadata, train_time, test, *,
          step_losses=None, cancelled=False, stop="completed") -> Path:
    """best.safetensors (+ .json); at the end also metrics.json and curves.png."""
    metrics = {k: best[k] for k in ("val_acc", "val_loss", "train_loss", "epoch")}
    if test is not None:
        metrics.update(test_acc=test["acc"], test_loss=test["loss"], test_n=test["n"])
    meta = {"classes": classes, **metadata, "metrics": metrics, "epochs": history[-1]["epoch"],
            "train_time": round(train_time, 1), "train_config": asdict(cfg)}
    path = save_checkpoint(model, out_dir / "best.safetensors", **meta)
    if step_losses is not None:
        (out_dir / "metrics.json").write_text(json.dumps(
            {"best": best, "test": test, "history": history, "cancelled": cancelled, "stop": stop, "train_time": train_time,
             "step_losses": step_losses, "config": model.config.to_dict(), "meta": meta},
            indent=2, default=list) + "\n")
        if cfg.curves:
            plot_curves(history, step_losses, out_dir / "curves.png")
    return path


def plot_curves(history: list[dict[str, float]], step_losses: list[float], path: str | Path) -> Path:
    """Training curves as a PNG: train loss per step and per epoch, val loss, val accuracy."""
    import matplotlib
    matplotlib.use("Agg", force=False)
    from matplotlib.figure import Figure  # no pyplot: no global state, safe from threads
    fig = Figure(figsize=(9, 3.4), dpi=100, layout="constrained")
    ax_loss, ax_acc = fig.subplots(1, 2)
    spe = history[-1]["step"] / history[-1]["epoch"] if history and history[-1]["epoch"] else 1
    if step_losses:
        ax_loss.plot([(i + 1) / spe for i in range(len(step_losses))], step_losses, lw=0.6, alpha=0.4,
                     color="tab:blue", label="train (step)")
    epochs = [h["epoch"] for h in history]
    ax_loss.plot(epochs, [h["train_loss"] for h in history], "o-", color="tab:blue", label="train")
    ax_loss.plot(epochs, [h["val_loss"] for h in history], "o-", color="tab:orange", label="val")
    ax_loss.set(xlabel="epoch", ylabel="loss", title="loss")
    ax_loss.legend()
    ax_acc.plot(epochs, [100 * h["val_acc"] for h in history], "o-", color="tab:green")
    ax_acc.set(xlabel="epoch", ylabel="%", title="validation accuracy", ylim=(0, 100))
    for ax in (ax_loss, ax_acc):
        ax.grid(alpha=0.3)
    fig.savefig(path)
    return Path(path)

