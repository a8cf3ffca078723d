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

import math
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn
from torch.utils.data import Dataset, DistributedSampler

from ..data.datasets import Datasets, ImageTensors, make_datasets, materialize
from ..model import ConvFormer
from .config import OPTIMIZERS, STOPS, TrainConfig, TrainResult
from .optim import lr_factor, optimizers, param_groups
from .results import plot_curves, save_best

__all__ = ["OPTIMIZERS", "STOPS", "Datasets", "ImageTensors", "TrainConfig", "TrainResult", "evaluate", "fit",
           "lr_factor", "make_datasets", "materialize", "normalizer", "optimizers", "param_groups", "plot_curves",
           "save_best"]


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


def normalizer(model: ConvFormer, device: torch.device) -> Callable[[torch.Tensor], torch.Tensor]:
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
    norm, k = normalizer(model, device), model.config.num_classes
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
            return _Training(model, train_set, val_set, cfg, _Place(device, rank, world, on_dist), progress=progress,
                             cancel=cancel, out_dir=Path(out_dir) if out_dir is not None else None,
                             test_set=test_set, metadata=metadata).run()
    finally:
        if created:
            dist.destroy_process_group()


@dataclass
class _Place:
    """Where a run trains: its device, this process's rank among `world`, and whether DDP is on."""
    device: torch.device
    rank: int = 0
    world: int = 1
    on_dist: bool = False


class _Training:
    """The state of one `fit`: the model and how it is stepped (optimizers, schedules, precision), the history
    so far, the best model and the clock. `run()` is the loop; each part of it is one method below."""

    def __init__(self, model: ConvFormer, train_set: ImageTensors, val_set: ImageTensors, cfg: TrainConfig,
                 place: _Place, *, progress=None, cancel=None, out_dir: Path | None = None,
                 test_set: Dataset | None = None, metadata: dict[str, Any] | None = None) -> None:
        self.model, self.train_set, self.val_set, self.cfg, self.place = model, train_set, val_set, cfg, place
        self.progress, self.cancel, self.out_dir, self.test_set = progress, cancel, out_dir, test_set
        self.metadata = metadata or {}
        device, rank, world = place.device, place.rank, place.world
        torch.manual_seed(cfg.seed)
        self.gen = torch.Generator().manual_seed(cfg.seed + rank)  # augmentation randomness, per process
        model.to(device).train()
        self.layout = torch.channels_last if cfg.channels_last else torch.contiguous_format
        model.to(memory_format=self.layout)
        self.net = nn.parallel.DistributedDataParallel(
            model, device_ids=[device] if device.type == "cuda" else None) if place.on_dist else model
        self.sampler = DistributedSampler(range(len(train_set)), num_replicas=world, rank=rank, shuffle=True,
                                          seed=cfg.seed, drop_last=False)
        self.steps_per_epoch = math.ceil(len(self.sampler) / cfg.batch_size)
        self.total = total = self.steps_per_epoch * cfg.epochs
        warmup, floor = round(cfg.warmup_epochs * self.steps_per_epoch), cfg.min_lr / cfg.lr
        self.opts = optimizers(model, cfg)
        self.opt = self.opts[-1]  # AdamW: its learning rate is the one reported (every group follows the same schedule)
        self.scheds = [torch.optim.lr_scheduler.LambdaLR(o, lambda s: lr_factor(s, total, warmup, floor))
                       for o in self.opts]
        self.use_amp = cfg.amp and device.type == "cuda"
        self.amp_dtype = torch.bfloat16 if self.use_amp and torch.cuda.is_bf16_supported() else torch.float16
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.use_amp and self.amp_dtype == torch.float16)
        self.norm = normalizer(model, device)
        self.val_shard = list(range(rank, len(val_set), world))
        self.fetch, self.resident = _batch_source(train_set, device)
        self.read_every = cfg.read_loss_every or (1 if device.type == "cpu" else 16)
        self.writer = rank == 0 and out_dir is not None
        self.classes = list(train_set.classes) or [str(i) for i in range(model.config.num_classes)]
        self.history: list[dict[str, float]] = []
        self.step_losses: list[float] = []
        self.pending: list[tuple[torch.Tensor, float]] = []  # (loss on the device, lr) of the steps not read back yet
        self.best: dict[str, float] = {}
        self.best_state: dict[str, torch.Tensor] | None = None
        self.step, self.stopped, self.reason = 0, False, "completed"
        self.start, self.cpu_start = time.perf_counter(), time.process_time()
        self.bar = None
        if cfg.progress_bar and rank == 0:
            from tqdm.auto import tqdm
            self.bar = tqdm(total=total, desc="train", unit="step", dynamic_ncols=True)

    def report(self, event: str, epoch: int, at: int | None = None, lr: float | None = None, **extra: Any) -> None:
        """`progress(info)` on rank 0 (see `fit` for what info holds)."""
        if self.progress is None or self.place.rank != 0:
            return
        elapsed, at = time.perf_counter() - self.start, self.step if at is None else at
        history, cfg = self.history, self.cfg
        self.progress({"event": event, "epoch": epoch, "epochs": cfg.epochs, "step": at, "total_steps": self.total,
                       "loss": self.step_losses[-1] if self.step_losses else None,
                       "lr": self.opt.param_groups[0]["lr"] if lr is None else lr,
                       "val_loss": history[-1]["val_loss"] if history else None,
                       "val_acc": history[-1]["val_acc"] if history else None,
                       "best_val_acc": self.best.get("val_acc"), "elapsed": elapsed,
                       "images_per_s": at * cfg.batch_size * self.place.world / max(elapsed, 1e-9),
                       "history": history, **extra})

    def read_back(self, epoch: int, losses: list[float]) -> None:
        """The pending steps' losses in one device-to-host copy (the one wait for the GPU), then their
        progress reports, step by step."""
        if not self.pending:
            return
        values = torch.stack([loss for loss, _ in self.pending]).tolist()
        first = self.step - len(values) + 1
        for i, (value, (_, lr)) in enumerate(zip(values, self.pending)):
            losses.append(value)
            self.step_losses.append(value)
            self.report("step", epoch, at=first + i, lr=lr)
        self.pending.clear()
        if self.bar is not None:
            self.bar.update(len(values))
            self.bar.set_postfix(epoch=epoch, loss=f"{values[-1]:.3f}", refresh=False)

    def train_step(self, batch: torch.Tensor) -> None:
        """One optimizer step on the images at `batch` (indices); its loss stays on the device (`pending`)."""
        cfg, opts, device = self.cfg, self.opts, self.place.device
        x, y = self.fetch(batch)
        x = x.float().div_(255)
        if cfg.augment:
            x = augment(x, self.gen, cfg.crop_scale, cfg.hflip)
        x = x.contiguous(memory_format=self.layout)
        with torch.autocast(device.type, dtype=self.amp_dtype, enabled=self.use_amp):
            loss = F.cross_entropy(self.net(self.norm(x)), y, label_smoothing=cfg.label_smoothing)
        for o in opts:
            o.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        if cfg.grad_clip:
            for o in opts:
                self.scaler.unscale_(o)
            nn.utils.clip_grad_norm_(self.model.parameters(), cfg.grad_clip)
        for o in opts:
            self.scaler.step(o)
        self.scaler.update()
        for sched in self.scheds:
            sched.step()
        self.step += 1
        self.pending.append((loss.detach(), self.opt.param_groups[0]["lr"]))

    def should_stop(self, read: bool) -> tuple[bool, bool]:
        """(stop now, because of the time limit): cancel or time_limit; under DDP every rank agrees (one wait,
        where the losses are read)."""
        over_time = self.cfg.time_limit is not None and time.perf_counter() - self.start > self.cfg.time_limit
        stop = bool(self.cancel is not None and self.cancel.is_set()) or over_time
        if self.place.on_dist:
            stop = read and _reduce([float(stop)], self.place.device, True)[0] > 0
        return stop, over_time

    def train_epoch(self, epoch: int) -> list[float]:
        """One pass over this process's shard; its step losses. Sets `stopped` when cancelled or out of time."""
        self.sampler.set_epoch(epoch)
        order = torch.tensor(list(self.sampler), dtype=torch.long)
        if self.resident:
            order = order.to(self.place.device)  # one copy per epoch; the batches are then cut on the device
        losses: list[float] = []
        batches = order.split(self.cfg.batch_size)
        for i, batch in enumerate(batches):
            self.train_step(batch)
            read = len(self.pending) >= self.read_every or i == len(batches) - 1
            if read:
                self.read_back(epoch + 1, losses)
            stop, over_time = self.should_stop(read)
            if stop:
                self.read_back(epoch + 1, losses)
                self.stopped, self.reason = True, "time_limit" if over_time else "cancelled"
                break
        return losses

    def end_epoch(self, epoch: float, losses: list[float]) -> None:
        """Evaluate on the validation split (reduced over ranks), add the history row, keep the best model."""
        model, device = self.model, self.place.device
        ev = evaluate(model, self.val_set, batch_size=self.cfg.eval_batch_size, device=device, indices=self.val_shard)
        sums = _reduce([ev["loss"] * ev["n"], ev["correct"], ev["n"], sum(losses), len(losses)], device,
                       self.place.on_dist)
        row = {"epoch": epoch, "train_loss": sums[3] / max(sums[4], 1), "val_loss": sums[0] / max(sums[2], 1),
               "val_acc": sums[1] / max(sums[2], 1), "lr": self.opt.param_groups[0]["lr"], "step": self.step,
               "time": time.perf_counter() - self.start}
        self.history.append(row)
        if not self.best or row["val_acc"] > self.best["val_acc"]:
            self.best = dict(row)
            self.best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
            if self.writer:
                self.save(row["time"])
        if self.bar is not None:
            self.bar.write(f"epoch {epoch:g}: train_loss {row['train_loss']:.4f}  val_loss {row['val_loss']:.4f}  "
                           f"val_acc {row['val_acc']:.2%}")

    def save(self, train_time: float, test: dict[str, Any] | None = None, *, final: bool = False) -> Path:
        """The best model so far as a checkpoint (`save_best`); `final`: with metrics.json and curves.png."""
        return save_best(self.model, self.out_dir, classes=self.classes, best=self.best, history=self.history,
                         cfg=self.cfg, metadata=self.metadata, train_time=train_time, test=test,
                         step_losses=self.step_losses if final else None, cancelled=self.stopped, stop=self.reason)

    def run(self) -> TrainResult:
        """Every epoch (or until a stop), then the best model restored, tested and saved."""
        cfg = self.cfg
        for epoch in range(cfg.epochs):
            losses = self.train_epoch(epoch)
            if not self.stopped or not self.history:
                self.end_epoch(epoch + 1 if not self.stopped else
                               round(epoch + len(losses) / self.steps_per_epoch, 3), losses)
                self.report("epoch", epoch + 1)
            if not self.stopped and cfg.target_acc is not None and self.history[-1]["val_acc"] >= cfg.target_acc \
                    and epoch + 1 < cfg.epochs:
                self.reason = "target_acc"  # every rank has the same (reduced) accuracy: they stop together
                break
            if self.stopped:
                break
        if self.bar is not None:
            self.bar.close()
        return self.finish()

    def finish(self) -> TrainResult:
        """The best weights back in the model; the test split; the final checkpoint; the "done" report."""
        model, start = self.model, self.start
        train_time = time.perf_counter() - start
        self.metadata = {**self.metadata, "cpu_time": round(time.process_time() - self.cpu_start, 1)}  # all threads
        model.load_state_dict(self.best_state)
        model.eval()
        test, timing = None, {"train": train_time}
        if self.test_set is not None:
            test = evaluate(model, self.test_set, batch_size=self.cfg.eval_batch_size, device=self.place.device)
        timing["test"] = time.perf_counter() - start - train_time
        checkpoint = self.save(train_time, test, final=True) if self.writer else None
        timing["save"] = time.perf_counter() - start - train_time - timing["test"]
        result = TrainResult(model, self.history, self.best, self.step_losses, train_time, self.stopped, checkpoint,
                             test, self.reason)
        self.report("done", int(math.ceil(self.history[-1]["epoch"])), cancelled=self.stopped, test=test,
                    stop=self.reason, timing=timing)
        return result
