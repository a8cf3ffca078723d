"""Task models: a ConvFormer backbone of any fusion stage, its feature taps, a neck and a task head.

The task table `HEADS` says which heads a task has (the first is its default); one builder reads it, as the
backbone's builder reads `LAYOUTS`. The backbone is the classifier's own `ConvFormer` (no classifier,
`num_classes=0`); the head reads it through timm's `forward_intermediates` at the taps `pick_taps` chooses:
per branch and stride (>= 4) the last tap, e.g. mid: conv stage 1 (stride 4) and the refined grid (stride 8);
late: the CNN's stride-4 and stride-8 stages and the ViT's last block; vit: its last block only, which the
neck turns into three levels as ViTDet does.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any

import torch
from torch import nn

from ..config import ConvFormerConfig
from ..model import ConvFormer, feature_taps
from ..data.shapes import CLASSES
from .heads import DenseHead, Neck, SegFormerHead, SetHead

TASKS = ("classify", "detect", "segment")
HEADS: dict[str, tuple[str, ...]] = {"detect": ("dense", "set"), "segment": ("segformer",)}


@dataclass
class HeadConfig:
    """Everything that defines a task head (the backbone has its own ConvFormerConfig)."""

    task: str = "detect"          # detect | segment
    head: str = ""                # detect: dense (CenterNet) | set (DETR); segment: segformer; "" = the default
    dim: int = 64                 # neck and head width
    num_classes: int = 10         # object classes K (segment adds background as class 0)
    queries: int = 12             # set: object queries Q
    decoder_layers: int = 2       # set: decoder layers L
    decoder_heads: int = 4        # set: attention heads; dim % decoder_heads == 0
    eos_coef: float = 0.1         # set: weight of "no object" in the class loss (DETR's 0.1)
    max_detections: int = 100     # dense: top-K peaks decoded
    refine: int = 0               # segformer: 3x3 conv-BN-ReLU blocks before the 1x1 classifier
    skip: int = 0                 # segformer: channels of the image's stride-2 low-level path (0 = none)
    dice: float = 0.0             # segformer: weight of the dice loss beside the pixel cross-entropy

    def __post_init__(self) -> None:
        if self.task not in HEADS:
            raise ValueError(f"task={self.task!r} has no head: expected one of {tuple(HEADS)}")
        self.head = self.head or HEADS[self.task][0]
        if self.head not in HEADS[self.task]:
            raise ValueError(f"head={self.head!r} is not a {self.task} head: expected one of {HEADS[self.task]}")
        for name, lo, hi in (("dim", 4, 1024), ("num_classes", 1, 1000), ("queries", 1, 300),
                             ("decoder_layers", 1, 12), ("decoder_heads", 1, 32), ("max_detections", 1, 1000),
                             ("refine", 0, 8), ("skip", 0, 256)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
                raise ValueError(f"{name}={value!r} is not allowed: expected an integer in [{lo}, {hi}]")
        for name, hi in (("dice", 10), ("eos_coef", 1)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= hi:
                raise ValueError(f"{name}={value!r} is not allowed: expected a number in [0, {hi}]")
        if self.dim % self.decoder_heads:
            raise ValueError(f"dim={self.dim} must be divisible by decoder_heads={self.decoder_heads}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


HEAD_FIELDS = {f.name for f in fields(HeadConfig)}


def pick_taps(cfg: ConvFormerConfig) -> list[tuple[int, int, int]]:
    """(tap index, channels, stride) the neck reads, finest first: per branch and stride the last tap, strides
    below 4 left out (unless the backbone has nothing coarser)."""
    taps = feature_taps(cfg)
    floor = min(4, max(t[4] for t in taps))
    last = {(t[0], t[4]): i for i, t in enumerate(taps) if t[4] >= floor}
    return sorted(((i, taps[i][3], taps[i][4]) for i in last.values()), key=lambda t: (t[2], t[0]))


class TaskModel(nn.Module):
    """(B, 3, H, W) -> a dict of named tensors (see `convformer.tasks`). `config` is the backbone's
    ConvFormerConfig (so preprocessing and the shape table read it as for a classifier), `head_config` the
    head's; `task`, `head_kind` and `class_names` say what it predicts."""

    def __init__(self, config: ConvFormerConfig, head: HeadConfig):
        super().__init__()
        self.config, self.head_config = config.replace(num_classes=0), head
        self.task, self.head_kind = head.task, head.head
        self.class_names = list(CLASSES)[:head.num_classes] + [f"class {i}" for i in range(len(CLASSES), head.num_classes)]
        self.backbone = ConvFormer(self.config)
        self.pretrained_cfg = self.default_cfg = self.backbone.pretrained_cfg
        self.taps = pick_taps(self.config)
        self.neck = Neck([(c, s) for _, c, s in self.taps], head.dim)
        k = head.num_classes
        self.head = {"dense": lambda: DenseHead(head.dim, k), "segformer": lambda: SegFormerHead(head.dim, k, head.refine, head.skip),
                     "set": lambda: SetHead(head.dim, k, head.queries, head.decoder_layers, head.decoder_heads),
                     }[head.head]()
        self.meta: dict[str, Any] = {}

    def forward_taps(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The backbone's maps at `self.taps`, finest first (block taps with the final norm)."""
        return self.backbone.forward_intermediates(x, indices=[i for i, _, _ in self.taps], norm=True,
                                                   stop_early=True, intermediates_only=True)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) -> the neck's fused map (B, dim, H / s, W / s), s = self.neck.stride."""
        return self.neck(self.forward_taps(x))

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        f = self.forward_features(x)
        return self.head(f, x) if self.task == "segment" else self.head(f)

    def get_classifier(self) -> nn.Module:
        """The head (training keeps it with AdamW, as the classifier; Muon takes the backbone's matrices)."""
        return self.head

    def no_weight_decay(self) -> set[str]:
        return {f"backbone.{n}" for n in self.backbone.no_weight_decay()}


def split_overrides(overrides: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Keyword overrides -> (head fields, backbone config fields)."""
    head = {k: v for k, v in overrides.items() if k in HEAD_FIELDS}
    return head, {k: v for k, v in overrides.items() if k not in HEAD_FIELDS}
