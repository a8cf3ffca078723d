"""Training recipes: what a one-minute run on the built-in shapes trains by default, per fusion stage.

Each recipe was found by measurement (benchmarks/NOTES.md sections 9 and 10, `python -m
benchmarks.train_recipes`): the shapes preset of the stage (`presets.SHAPES_PRESETS`) at a small image size, a
data size and a number of epochs that fit about a minute of wall time on 2 CPU cores, and the DeiT-style loop
of `train.fit`, with Muon on the transformer blocks' matrices wherever a stage has them.
The Train tab's defaults and the `python -m convformer train --recipe FUSION` command read them from here;
`Recipe.measured` holds the validation-accuracy curve of that run, which the tab draws as the stage's typical
curve and which `verdict` compares a finished run against.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..config import FUSIONS, ConvFormerConfig
from ..presets import SHAPES_PRESETS, preset_name
from .loop import TrainConfig

__all__ = ["DEFAULT", "RECIPES", "Recipe", "Standing", "estimate_seconds", "standing", "verdict"]

# seconds to render one shapes image of H x W px on one core: 0.52 / 0.58 / 0.65 / 0.83 ms at 32 / 40 / 48 / 64 px
RENDER_S, RENDER_S_PER_PX = 0.42e-3, 0.1e-3 / 32 ** 2


# what every recipe (this module's Recipe, convformer.tasks' TaskRecipe) says about its training
RECIPE_FIELDS = ("epochs", "lr", "batch_size", "warmup_epochs", "augment", "optimizer")


def recipe_train_config(recipe: Any, **overrides: Any) -> TrainConfig:
    """The one way a recipe becomes a TrainConfig: its RECIPE_FIELDS, then `overrides` over them."""
    return TrainConfig(**{**{k: getattr(recipe, k) for k in RECIPE_FIELDS}, **overrides})


@dataclass(frozen=True)
class Recipe:
    """One fusion stage's default run: model, data size, training settings and the measured result."""

    fusion: str
    img_size: int                      # pixels (square)
    train_size: int                    # rendered training images (cached, shared between runs)
    epochs: int
    lr: float
    val_size: int = 1000
    batch_size: int = 128
    warmup_epochs: float = 0.5
    label_smoothing: float = 0.1
    augment: bool = True
    optimizer: str = "adamw"           # adamw | muon (TrainConfig.optimizer)
    model: dict[str, Any] = field(default_factory=dict)  # overrides of convformer_<fusion>_shapes
    # measured on 2 CPU cores (reference machine, see NOTES section 9): (seconds, val_acc) after each epoch
    curve: tuple[tuple[float, float], ...] = ()
    images_per_s: float = 0.0          # training images per second over the whole run (evaluation included)

    def model_config(self, num_classes: int = 10) -> ConvFormerConfig:
        base = SHAPES_PRESETS[preset_name(self.fusion, "shapes")]
        return base.replace(img_size=self.img_size, num_classes=num_classes, **self.model)

    def train_config(self, **overrides: Any) -> TrainConfig:
        return recipe_train_config(self, **{"label_smoothing": self.label_smoothing, **overrides})

    @property
    def seconds(self) -> float:
        """Measured wall time of the whole run (data already rendered)."""
        return self.curve[-1][0] if self.curve else 0.0

    @property
    def best(self) -> float:
        return max((a for _, a in self.curve), default=0.0)

    def accuracy_at(self, seconds: float) -> float:
        """The measured curve at `seconds`, linear between epochs, from chance (0.1) at 0 s; flat after the end."""
        points = ((0.0, 0.1), *self.curve)
        for (t0, a0), (t1, a1) in zip(points, points[1:]):
            if seconds <= t1:
                return a0 + (a1 - a0) * max(0.0, seconds - t0) / (t1 - t0)
        return points[-1][1]

    def time_to(self, acc: float) -> float | None:
        """Seconds until the measured curve first reached `acc`, None if it never did."""
        return next((t for t, a in self.curve if a >= acc), None)

    def command(self) -> str:
        return f"python -m convformer train --recipe {self.fusion} --threads 2 --out runs/{self.fusion}"


# Measured with `python -m benchmarks.train_recipes recipes` (benchmarks/train_runs/8-cpu-recipes.jsonl, seed 0):
# one run at a time on the 2 cores of the development machine (2 vCPUs of an Intel Xeon, nothing else running),
# torch.set_num_threads(2), data cached. NOTES sections 9, 10 and 12.
RECIPES: dict[str, Recipe] = {
    "late": Recipe("late", 40, 10000, 7, 5e-3, augment=False, images_per_s=2194, curve=(
        (4.7, .268), (9.1, .527), (13.7, .469), (18.2, .827), (22.8, .834), (27.4, .935), (31.9, .946))),
    "cnn": Recipe("cnn", 40, 10000, 6, 3e-3, augment=False, images_per_s=2167, curve=(
        (5.2, .203), (9.8, .369), (14.3, .585), (18.8, .640), (23.2, .900), (27.7, .925))),
    # early and mid: Muon on the blocks' matrices (with AdamW: 75.6 % and 86.5 % in the same time)
    "mid": Recipe("mid", 40, 10000, 6, 5e-3, augment=False, optimizer="muon", images_per_s=1622, curve=(
        (6.2, .217), (12.2, .491), (18.4, .188), (24.6, .693), (30.8, .906), (37.0, .931))),
    "early": Recipe("early", 40, 10000, 7, 5e-3, augment=False, optimizer="muon", model={"pool": "avg", "depth": 2},
                    images_per_s=2290, curve=(
        (4.6, .226), (9.2, .443), (13.6, .322), (17.7, .594), (21.8, .662), (26.1, .870), (30.6, .887))),
    # the pure ViT: Muon, fixed sin-cos positions, a higher peak lr, and 20,000 images (10,000 overfit)
    "vit": Recipe("vit", 40, 20000, 7, 8e-3, augment=False, warmup_epochs=1.0, optimizer="muon",
                  model={"depth": 2, "embed_dim": 96, "num_heads": 3, "pos_embed": "sincos"}, images_per_s=2818,
                  curve=((7.2, .194), (14.3, .342), (21.3, .482), (28.4, .619), (35.5, .777), (42.6, .838),
                         (49.7, .846))),
}
DEFAULT = "late"  # the hybrid that passes 90 % first
assert set(RECIPES) == set(FUSIONS)


def _flops(cfg: ConvFormerConfig) -> float:
    """Forward FLOPs of one image (torch.utils.flop_counter on the meta device: no memory, no compute)."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from ..model import ConvFormer
    with torch.device("meta"):
        model = ConvFormer(cfg)
        with FlopCounterMode(display=False) as counter:
            model(torch.zeros(1, cfg.in_chans, *cfg.img_size))
    return float(counter.get_total_flops())


def estimate_seconds(cfg: ConvFormerConfig, epochs: int, train_size: int, val_size: int = 1000,
                     rendered: int | None = None) -> float:
    """Wall time a run should take on 2 CPU cores like the reference machine: the recipe of the same fusion
    stage scaled by forward FLOPs per image and by images seen, plus rendering what is not cached yet
    (`rendered`: images already cached; default none)."""
    ref = RECIPES[cfg.fusion]
    per_image = _flops(cfg) / _flops(ref.model_config())
    work = (epochs * (train_size + val_size / 3)) / (ref.epochs * (ref.train_size + ref.val_size / 3))
    todo = max(0, train_size + val_size - (rendered or 0))
    return ref.seconds * per_image * work + todo * (RENDER_S + RENDER_S_PER_PX * cfg.img_size[0] * cfg.img_size[1])


@dataclass(frozen=True)
class Standing:
    """Where a finished run stands: the stage's typical accuracy at the same time, and every stage's
    measured time to 90 % (None: not within its run) with its best accuracy."""

    typical: float | None
    relation: str                      # "above" | "below" | "typical" (within 2 points) | "unknown"
    ranking: tuple[tuple[str, float | None, float], ...]


def standing(fusion: str, best_acc: float, seconds: float) -> Standing:
    ref = RECIPES.get(fusion)
    typical = ref.accuracy_at(seconds) if ref and ref.curve else None
    relation = ("unknown" if typical is None else "above" if best_acc >= typical + 0.02 else
                "below" if best_acc <= typical - 0.02 else "typical")
    ranking = sorted(((r.fusion, r.time_to(0.9), r.best) for r in RECIPES.values() if r.curve),
                     key=lambda x: (x[1] is None, x[1] or 0.0, -x[2]))
    return Standing(typical, relation, tuple(ranking))


def verdict(fusion: str, best_acc: float, seconds: float, cancelled: bool = False) -> str:
    """One line on a finished run: its accuracy and time, and where it stands against the measured curves."""
    s = standing(fusion, best_acc, seconds)
    text = f"{fusion} fusion: best validation accuracy {best_acc:.1%} after {seconds:.0f} s"
    if cancelled:
        text += " (stopped early)"
    if s.relation != "unknown":
        text += {"above": "; above", "below": "; below", "typical": "; about"}[s.relation]
        text += f" this stage's typical {s.typical:.0%} at that time"
    parts = [f"{f} {t:.0f} s" if t is not None else f"{f} not within its run ({b:.0%} best)" for f, t, b in s.ranking]
    return text + ". Time to 90% with the recipes: " + ", ".join(parts) + "."
