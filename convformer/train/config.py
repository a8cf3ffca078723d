"""How to train (`TrainConfig`, validated in one place) and what training gives back (`TrainResult`)."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..model import ConvFormer

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
