"""Training a task model on Shapes scenes with the classifier's training parts (`convformer.train`: the same
TrainConfig, AdamW / Muon optimizers and warm-up + cosine schedule), its own loss and metric per task:
mAP@0.5 (detect) or mIoU with background (segment) on the validation scenes after every epoch; the best
epoch's weights are kept and, with `out_dir`, written as a task checkpoint with its record.
"""
from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..train import TrainConfig, lr_factor, optimizers
from .decode import decode
from .losses import task_loss
from .metrics import detections_to_preds, mean_ap, mean_iou
from .model import TaskModel
from .scenes import SceneTensors
from .weights import save_task_checkpoint

METRIC = {"detect": "map_50", "segment": "miou"}


@dataclass
class TaskResult:
    """What `fit_task` returns; `model` holds the best epoch's weights (by the task's metric)."""

    model: TaskModel
    history: list[dict[str, float]]
    best: dict[str, float]
    step_losses: list[float]
    train_time: float
    cancelled: bool
    checkpoint: Path | None = None
    test: dict[str, Any] | None = None


def _normalize(model: TaskModel, x: torch.Tensor) -> torch.Tensor:
    mean = torch.tensor(model.config.mean, device=x.device).view(1, 3, 1, 1)
    std = torch.tensor(model.config.std, device=x.device).view(1, 3, 1, 1)
    return (x.float() / 255 - mean) / std


def _batch(data: SceneTensors, idx: torch.Tensor, device: torch.device, flip: torch.Tensor | None) -> dict:
    """Images, padded boxes / labels and semantic masks of `idx`; `flip` (B,) bool mirrors those images."""
    x, sem, boxes = data.images[idx].to(device), data.semantic[idx].to(device), data.boxes[idx].to(device)
    if flip is not None and flip.any():
        f = flip.to(device)
        w = x.shape[-1]
        x = torch.where(f[:, None, None, None], x.flip(-1), x)
        sem = torch.where(f[:, None, None], sem.flip(-1), sem)
        mirrored = torch.stack([w - boxes[..., 2], boxes[..., 1], w - boxes[..., 0], boxes[..., 3]], -1)
        boxes = torch.where(f[:, None, None], mirrored, boxes)
    return {"images": x, "semantic": sem, "boxes": boxes, "labels": data.labels[idx].to(device)}


@torch.no_grad()
def evaluate_task(model: TaskModel, data: SceneTensors, batch_size: int = 128,
                  min_score: float = 0.01) -> dict[str, Any]:
    """detect: COCO mAP (map, map_50, map_75); segment: mIoU over background + classes, per class too.
    "metric" is the one training keeps the best epoch by (map_50 or miou)."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    preds, masks = [], []
    for idx in torch.arange(len(data)).split(batch_size):
        x = _normalize(model, data.images[idx].to(device))
        out = model(x)
        if model.task == "detect":
            dets = decode(out, tuple(x.shape[-2:]), model.head_config.max_detections)
            preds += [{k: v[p["scores"] >= min_score] for k, v in p.items()} for p in detections_to_preds(dets)]
        else:
            masks.append(out["logits"].argmax(1).cpu())
    model.train(was_training)
    if model.task == "detect":
        ap = mean_ap(preds, data.targets())
        return {"metric": ap["map_50"], "map_50": ap["map_50"], "map": ap["map"], "map_75": ap["map_75"],
                "n": len(data)}
    iou = mean_iou(torch.cat(masks), data.semantic.long(), model.head_config.num_classes + 1)
    return {"metric": iou["miou"], "miou": iou["miou"], "miou_per_image": iou["miou_per_image"],
            "per_class_iou": iou["per_class"], "n": len(data)}


@dataclass
class _Run:
    """The state of one training run, shared by its steps and epochs."""

    model: TaskModel
    cfg: TrainConfig
    device: torch.device
    opts: list
    scheds: list
    clock: str = "wall"
    start: float = field(default_factory=time.perf_counter)
    cpu_start: float = field(default_factory=time.process_time)
    step: int = 0
    history: list = field(default_factory=list)
    step_losses: list = field(default_factory=list)
    best: dict = field(default_factory=dict)
    best_state: dict | None = None
    save: Callable[[], None] | None = None  # writes the best epoch so far (with out_dir), as the classifier's fit

    def train_step(self, batch: dict) -> float:
        out = self.model(_normalize(self.model, batch["images"]))
        loss = task_loss(self.model, out, batch, tuple(batch["images"].shape[-2:]))
        for o in self.opts:
            o.zero_grad(set_to_none=True)
        loss.backward()
        if self.cfg.grad_clip:
            nn.utils.clip_grad_norm_(self.model.parameters(), self.cfg.grad_clip)
        for o in self.opts:
            o.step()
        for s in self.scheds:
            s.step()
        self.step += 1
        self.step_losses.append(float(loss.detach()))
        return self.step_losses[-1]

    def end_epoch(self, epoch: float, losses: list[float], val: SceneTensors) -> dict:
        ev = evaluate_task(self.model, val, self.cfg.eval_batch_size)
        row = {"epoch": epoch, "train_loss": sum(losses) / max(len(losses), 1), "val_metric": ev["metric"],
               METRIC[self.model.task]: ev["metric"], "lr": self.opts[-1].param_groups[0]["lr"], "step": self.step,
               "time": time.perf_counter() - self.start, "cpu_time": time.process_time() - self.cpu_start,
               "budget_time": self.elapsed()}
        self.history.append(row)
        if not self.best or row["val_metric"] > self.best["val_metric"]:
            self.best = dict(row)
            self.best_state = {k: v.detach().clone() for k, v in self.model.state_dict().items()}
            if self.save is not None:
                self.save()
        return row

    def elapsed(self) -> float:
        """Seconds by the run's clock: wall, or "cpu": this process's CPU seconds / torch threads, what the run
        would take on idle cores (an estimate, for timing on a shared machine)."""
        if self.clock == "cpu":
            return (time.process_time() - self.cpu_start) / torch.get_num_threads()
        return time.perf_counter() - self.start


def fit_task(model: TaskModel, train: SceneTensors, val: SceneTensors, cfg: TrainConfig | None = None, *,
             progress: Callable[[dict[str, Any]], None] | None = None, cancel: threading.Event | None = None,
             out_dir: str | Path | None = None, test: SceneTensors | None = None,
             metadata: dict[str, Any] | None = None, clock: str = "wall") -> TaskResult:
    """Train `model` in place; evaluate on `val` after every epoch and keep the best. `progress(info)` gets a
    dict after every step ("step") and epoch ("epoch"): epoch, step, total_steps, loss, val_metric, elapsed,
    history; `cancel` or cfg.time_limit stops after the current step (a run stopped before its first epoch
    ends is evaluated once). clock="cpu" counts cfg.time_limit in CPU seconds / threads (see `_Run.elapsed`).
    With `out_dir`: best.safetensors (+ .json) with metrics and the record."""
    from ..data import pick_device
    cfg = cfg or TrainConfig()
    if len(train) == 0 or len(val) == 0:
        raise ValueError("the training and validation splits need at least one scene each")
    device = pick_device(cfg.device)
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(cfg.seed)
        model.to(device).train()
        spe = math.ceil(len(train) / cfg.batch_size)
        total, warmup = spe * cfg.epochs, round(cfg.warmup_epochs * spe)
        opts = optimizers(model, cfg)
        scheds = [torch.optim.lr_scheduler.LambdaLR(o, lambda s: lr_factor(s, total, warmup, cfg.min_lr / cfg.lr))
                  for o in opts]
        run = _Run(model, cfg, device, opts, scheds, clock)
        if out_dir is not None:  # a run stopped from outside still leaves its best epoch
            run.save = lambda: _save(TaskResult(model, run.history, run.best, run.step_losses, run.elapsed(),
                                                False), cfg, Path(out_dir), metadata or {})
        cancelled = _epochs(run, train, val, total, progress, cancel)
    model.load_state_dict(run.best_state)
    model.eval()
    test_metrics = evaluate_task(model, test) if test is not None else None
    result = TaskResult(model, run.history, run.best, run.step_losses, run.elapsed(), cancelled, None, test_metrics)
    if out_dir is not None:
        result.checkpoint = _save(result, cfg, Path(out_dir), metadata or {})
    if progress is not None:
        progress({"event": "done", "history": run.history, "best": run.best, "test": test_metrics,
                  "cancelled": cancelled, "elapsed": result.train_time})
    return result


def _epochs(run: _Run, train: SceneTensors, val: SceneTensors, total: int, progress, cancel) -> bool:
    """The epoch loop; returns whether it was stopped early."""
    gen = torch.Generator().manual_seed(run.cfg.seed)
    spe = math.ceil(len(train) / run.cfg.batch_size)
    for epoch in range(run.cfg.epochs):
        losses: list[float] = []
        for idx in torch.randperm(len(train), generator=gen).split(run.cfg.batch_size):
            flip = torch.rand(len(idx), generator=gen) < 0.5 if run.cfg.augment and run.cfg.hflip else None
            losses.append(run.train_step(_batch(train, idx, run.device, flip)))
            if progress is not None:
                progress({"event": "step", "epoch": epoch + 1, "epochs": run.cfg.epochs, "step": run.step,
                          "total_steps": total, "loss": losses[-1], "elapsed": run.elapsed(),
                          "val_metric": run.history[-1]["val_metric"] if run.history else None})
            over = run.cfg.time_limit is not None and run.elapsed() > run.cfg.time_limit
            if over or (cancel is not None and cancel.is_set()):
                if not run.history:
                    run.end_epoch(round(epoch + len(losses) / spe, 3), losses, val)
                return True
        row = run.end_epoch(epoch + 1, losses, val)
        if progress is not None:
            progress({"event": "epoch", **row, "history": run.history})
    return False


def _save(result: TaskResult, cfg: TrainConfig, out_dir: Path, metadata: dict[str, Any]) -> Path:
    model = result.model
    metrics = {k: v for k, v in result.best.items()}
    if result.test is not None:
        metrics.update({f"test_{k}": v for k, v in result.test.items() if k != "per_class_iou"})
    return save_task_checkpoint(model, out_dir / "best.safetensors", classes=model.class_names, **metadata,
                                metrics=metrics, history=result.history, train_time=round(result.train_time, 1),
                                train_config=asdict(cfg))
