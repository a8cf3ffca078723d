"""The optimizers and the schedule `fit` steps: AdamW groups (no weight decay on norms, biases, embeddings),
Muon on the hidden weight matrices (`muon.py`), linear warm-up then cosine."""
from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from .config import TrainConfig
from .muon import Muon

def param_groups(model: nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """AdamW groups: weight decay on weight matrices and kernels only, not on norms, biases, embeddings."""
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        skip = p.ndim <= 1 or name.endswith(("pos_embed", "cls_token"))
        (no_decay if skip else decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def optimizers(model: nn.Module, cfg: TrainConfig) -> list[torch.optim.Optimizer]:
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
