"""The study's protocol: which models, which runs, how long, all as data.

Five fusion stages at matched parameter counts (within `PARAM_TOLERANCE` of `PARAM_TARGET`), the two branches of
late fusion on their own, and mid fusion with its attention after conv stage 1, 2 or 3, all trained by one
recipe (`Protocol`): AdamW (or SGD for the optimizer gap), warm-up then cosine, label smoothing, no
augmentation, a fixed number of steps whatever the data size, so every number compares equal work.
`plan(protocol)` lists the runs, the most telling per second first, so a study stopped early has whole claims
rather than a bit of each.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from typing import Any

from ..config import FUSIONS, ConvFormerConfig

__all__ = ["FULL", "MODELS", "PARAM_TARGET", "PARAM_TOLERANCE", "PLACEMENTS", "Protocol", "QUICK", "RunSpec",
           "estimate_seconds", "model_config", "model_table", "plan"]

PARAM_TARGET, PARAM_TOLERANCE = 235_000, 0.10
_BASE = dict(img_size=32, num_classes=10, num_heads=2)
# every token grid is 4 x 4 at 32 px (three stride-2 conv stages, or 8 px patches), except the placement sweep's
MODELS: dict[str, ConvFormerConfig] = {
    "early": ConvFormerConfig(fusion="early", conv_widths=(16, 32, 64), conv_depths=(0, 1, 1), embed_dim=64,
                              depth=2, pool="avg", **_BASE),
    "mid": ConvFormerConfig(fusion="mid", conv_widths=(16, 32, 64), conv_depths=(0, 1, 1), embed_dim=52, depth=2,
                            **_BASE),
    "late": ConvFormerConfig(fusion="late", conv_widths=(16, 32, 64), conv_depths=(0, 1, 1), embed_dim=64,
                             depth=2, patch_size=8, pool="avg", merge="concat", **_BASE),
    "cnn": ConvFormerConfig(fusion="cnn", conv_widths=(16, 32, 64, 64), conv_depths=(0, 1, 1, 1), **_BASE),
    "vit": ConvFormerConfig(fusion="vit", embed_dim=64, depth=4, patch_size=8, pool="avg", **_BASE),
    # late fusion's branches trained alone (half its parameters each: the point is what merging adds)
    "late/cnn": ConvFormerConfig(fusion="cnn", conv_widths=(16, 32, 64), conv_depths=(0, 1, 1), **_BASE),
    "late/vit": ConvFormerConfig(fusion="vit", embed_dim=64, depth=2, patch_size=8, pool="avg", **_BASE),
    # mid fusion, attention after conv stage 1 (16 x 16 tokens) or 2 (8 x 8); after stage 3 is "mid" (4 x 4)
    "mid@1": ConvFormerConfig(fusion="mid", conv_widths=(32,), conv_depths=(1,), embed_dim=64, depth=2, **_BASE),
    "mid@2": ConvFormerConfig(fusion="mid", conv_widths=(16, 48), conv_depths=(0, 1), embed_dim=64, depth=2, **_BASE),
}
PLACEMENTS = {1: "mid@1", 2: "mid@2", 3: "mid"}
MAIN_ORDER = ("early", "late", "mid", "cnn", "vit")  # the first three decide two claims, cnn a third
MATCHED = (*FUSIONS, "mid@1", "mid@2")  # the models held to PARAM_TARGET


@dataclass(frozen=True)
class Protocol:
    """How every run trains and what the study runs. Steps are fixed: a smaller training split is seen more often."""

    name: str
    seeds: tuple[int, ...] = (0, 1, 2)
    steps: int = 360                   # optimizer steps per run, whatever the data size
    batch_size: int = 64
    eval_every: int = 40               # steps between validation points of the curve
    lr: float = 3e-3                   # AdamW peak
    sgd_lr: float = 0.05               # SGD (momentum 0.9, Nesterov) peak
    weight_decay: float = 0.05         # AdamW; SGD takes 5e-4
    warmup: float = 0.1                # share of the steps
    label_smoothing: float = 0.1
    full_size: int = 20_000            # "100 %" of the training data
    sizes: tuple[int, ...] = (1_000, 2_000, 6_000, 20_000)  # training split sizes (1k and 20k: the gap)
    val_size: int = 400                # the curve's validation images
    test_size: int = 1_000             # final accuracy, noise and the gap are scored on these
    train_eval_size: int = 1_000       # training images scored for the train - test gap
    threshold: float = 0.80            # "steps to 80 %"
    noise_std: float = 0.08            # high-frequency noise, in [0, 1] pixel units
    data_seed: int = 0                 # the images are the same for every seed; seeds change init and order
    sgd: bool = True
    branches: bool = True
    placements: bool = True

    def replace(self, **changes: Any) -> "Protocol":
        return replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


FULL = Protocol("full")
QUICK = Protocol("quick", seeds=(0,), steps=200, eval_every=25, full_size=6_000, sizes=(1_000, 6_000),
                val_size=300, test_size=500, train_eval_size=500)


@dataclass(frozen=True)
class RunSpec:
    """One training run of the study."""

    model: str                         # a key of MODELS
    seed: int
    train_size: int
    optimizer: str = "adamw"           # adamw | sgd
    role: str = "main"                 # main | size | sgd | branch | placement
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def key(self) -> str:
        return f"{self.model}|{self.optimizer}|{self.train_size}|{self.seed}"


def model_config(name: str) -> ConvFormerConfig:
    if name not in MODELS:
        raise ValueError(f"model={name!r} is not in the study: expected one of {sorted(MODELS)}")
    return MODELS[name]


def plan(p: Protocol) -> list[RunSpec]:
    """Every run of protocol `p`, most telling per second first (so a study stopped early has whole claims): the
    main runs, late's branches, SGD, the data sizes, then the placement sweep (attention after stage 1 costs
    13x a main run's FLOPs)."""
    full = p.full_size
    runs = [RunSpec(f, s, full) for f in MAIN_ORDER for s in p.seeds]  # every seed of a stage: verdicts sooner
    if p.branches:
        runs += [RunSpec(b, s, full, role="branch") for s in p.seeds for b in ("late/cnn", "late/vit")]
    if p.sgd:
        runs += [RunSpec(f, s, full, "sgd", role="sgd") for s in p.seeds for f in FUSIONS]
    runs += [RunSpec(f, s, n, role="size") for n in p.sizes if n != full for s in p.seeds for f in FUSIONS]
    if p.placements:
        runs += [RunSpec(PLACEMENTS[k], s, full, role="placement") for k in (2, 1) for s in p.seeds]
    return runs


def _flops(cfg: ConvFormerConfig) -> int:
    """Forward FLOPs of one image (torch.utils.flop_counter on the meta device: no memory, no compute)."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from ..model import ConvFormer
    with torch.device("meta"):
        model = ConvFormer(cfg)
        with FlopCounterMode(display=False) as counter:
            model(torch.zeros(1, cfg.in_chans, *cfg.img_size))
    return counter.get_total_flops()


def model_table(names: tuple[str, ...] = tuple(MODELS)) -> list[dict[str, Any]]:
    """Parameters, forward FLOPs of one image and tokens per model."""
    import torch

    from ..model import ConvFormer
    rows = []
    for name in names:
        cfg = MODELS[name]
        with torch.device("meta"):
            params = sum(p.numel() for p in ConvFormer(cfg).parameters())
        gh, gw = cfg.grid_size() if cfg.uses_transformer else (0, 0)
        rows.append({"model": name, "params": params, "flops": _flops(cfg), "tokens": gh * gw,
                     "matched": name in MATCHED})
    return rows


def estimate_seconds(p: Protocol) -> float:
    """Wall time of protocol `p` on 2 quiet CPU cores like the reference machine (benchmarks/NOTES.md section 9):
    the late recipe's measured images per second there, scaled by forward FLOPs per image for every run, plus
    the curve's and the scores' evaluations (a forward is a third of a training step) and the rendering."""
    from ..train.recipes import RENDER_S, RECIPES
    ref = RECIPES["late"]
    ref_flops = _flops(ref.model_config())
    flops = {r["model"]: r["flops"] for r in model_table()}
    per_run_eval = (p.steps // p.eval_every) * p.val_size + 2 * p.test_size + p.train_eval_size
    work = sum(flops[s.model] * (p.steps * p.batch_size + per_run_eval / 3) for s in plan(p))
    return work / (ref_flops * ref.images_per_s) + (max(p.sizes) + p.val_size + p.test_size) * RENDER_S
