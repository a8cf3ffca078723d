"""Task recipes: what `train --task detect|segment` runs per fusion stage, found by measurement
(benchmarks/NOTES.md, "Tasks"; `python -m benchmarks.bench_tasks`). Like the classification recipes
(`convformer.recipe`), each becomes a `TrainConfig` for the shared optimizers and schedule; the backbone
starts from the stage's bundled shapes classifier."""
from __future__ import annotations

import dataclasses
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from ..config import FUSIONS
from ..train import TrainConfig
from ..train.recipes import recipe_train_config
from .model import HEADS
from .scenes import scene_split
from .train import METRIC, TaskResult, fit_task
from .weights import create_task_model


@dataclass(frozen=True)
class TaskRecipe:
    task: str
    fusion: str
    head: str = ""
    img_size: int = 64
    train_size: int = 2000
    val_size: int = 300
    test_size: int = 500
    epochs: int = 8
    lr: float = 2e-3
    batch_size: int = 32
    warmup_epochs: float = 0.5
    optimizer: str = "adamw"
    augment: bool = True                # horizontal flips (boxes and masks mirrored with the image)
    time_limit: float | None = None
    weights: str = "backbone"           # backbone: start from the bundled shapes classifier; random: from scratch
    model: dict[str, Any] = field(default_factory=dict)  # HeadConfig / backbone overrides
    measured: tuple[tuple[float, float], ...] = ()     # (seconds, val metric) per epoch, reference run

    @property
    def metric(self) -> str:
        return METRIC[self.task]

    def replace(self, **changes: Any) -> "TaskRecipe":
        return dataclasses.replace(self, **changes)

    def train_config(self, **overrides: Any) -> TrainConfig:
        return recipe_train_config(self, **{"warmup_epochs": min(self.warmup_epochs, self.epochs),
                                            "time_limit": self.time_limit, "label_smoothing": 0.0,
                                            "progress_bar": False, **overrides})

    def command(self) -> str:
        head = f" --head {self.head}" if self.head else ""
        return f"python -m convformer train --task {self.task} --fusion {self.fusion}{head} --threads 2 --out runs/x"


_SPLITS = {"train_size": 1000, "val_size": 200, "test_size": 300}
# The measured recipes (benchmarks/NOTES.md, 13b; one thread, `--clock cpu`): `measured` is (CPU s, val metric).
DEFAULTS = {
    "detect": TaskRecipe("detect", "mid", **_SPLITS, epochs=10, lr=2e-3, measured=(
        (7.4, 0.3), (12.9, 0.481), (18.5, 0.683), (24.3, 0.741), (29.9, 0.778), (35.8, 0.81), (41.6, 0.838),
        (46.7, 0.862), (52.7, 0.868), (58.5, 0.869))),
    # 2 x 3x3 refinement + dice, batch 16, 2000 scenes x 9 epochs: 0.819 val / 0.807 test mIoU in 110 CPU-s
    "segment": TaskRecipe("segment", "mid", **{**_SPLITS, "train_size": 2000}, epochs=9, batch_size=16, lr=4e-3,
                          model={"refine": 2, "dice": 1.0}, measured=(
        (14.1, 0.307), (26.1, 0.452), (37.7, 0.641), (49.5, 0.664), (61.4, 0.757), (73.7, 0.749), (86.1, 0.805),
        (98.0, 0.817), (109.7, 0.819))),
}
_DETECT = DEFAULTS["detect"]
_SET = _DETECT.replace(head="set", train_size=2000, epochs=14)  # the anchored set head's one recipe (NOTES 13c, 13d)
RECIPES: dict[tuple[str, str, str], TaskRecipe] = {
    ("detect", "early", ""): _DETECT.replace(fusion="early", measured=(
        (8.5, 0.282), (14.2, 0.372), (20.2, 0.468), (25.8, 0.505), (31.1, 0.606), (35.8, 0.649), (40.8, 0.666),
        (46.0, 0.692), (51.7, 0.691), (57.4, 0.694))),
    ("detect", "cnn", ""): _DETECT.replace(fusion="cnn", measured=(
        (7.1, 0.21), (12.0, 0.314), (17.3, 0.594), (22.6, 0.592), (28.4, 0.641), (34.0, 0.764), (39.1, 0.787),
        (44.3, 0.791), (49.4, 0.82), (54.7, 0.824))),
    ("detect", "late", ""): _DETECT.replace(fusion="late", measured=(
        (6.5, 0.306), (10.8, 0.343), (15.9, 0.589), (20.9, 0.628), (25.5, 0.682), (30.4, 0.747), (35.3, 0.774),
        (40.3, 0.79), (45.0, 0.807), (50.1, 0.807))),
    ("detect", "vit", ""): _DETECT.replace(fusion="vit", train_size=2000, epochs=16, measured=(
        (9.4, 0.21), (16.7, 0.29), (24.5, 0.33), (32.5, 0.412), (40.2, 0.444), (48.1, 0.481), (56.1, 0.522),
        (63.9, 0.538), (71.8, 0.597), (79.8, 0.634), (88.0, 0.643), (96.1, 0.663), (104.3, 0.676),
        (112.6, 0.684), (121.3, 0.689), (130.6, 0.688))),
    ("segment", "early", ""): DEFAULTS["segment"].replace(fusion="early", measured=(
        (13.6, 0.201), (25.4, 0.328), (37.6, 0.522), (49.3, 0.573), (61.1, 0.695), (72.6, 0.709), (84.0, 0.75),
        (95.8, 0.762), (107.8, 0.759))),
    ("segment", "cnn", ""): DEFAULTS["segment"].replace(fusion="cnn", measured=(
        (13.5, 0.309), (24.7, 0.287), (36.2, 0.581), (47.7, 0.616), (58.6, 0.677), (70.6, 0.728), (83.4, 0.761),
        (95.8, 0.775), (107.8, 0.771))),
    ("segment", "late", ""): DEFAULTS["segment"].replace(fusion="late", measured=(
        (13.3, 0.344), (24.1, 0.432), (35.1, 0.557), (45.8, 0.592), (56.4, 0.711), (67.5, 0.729), (78.8, 0.755),
        (90.5, 0.772), (103.7, 0.776))),
    # Muon on the ViT blocks' matrices (AdamW at 4e-3 left the classes confused), 4000 scenes x 7 epochs at lr 8e-3,
    # in the 180 s a non-default stage has: 0.706 val / 0.697 test mIoU in 148 CPU-s (AdamW, 2000 x 9: 0.477 / 0.478)
    ("segment", "vit", ""): DEFAULTS["segment"].replace(fusion="vit", train_size=4000, epochs=7, lr=8e-3,
                                                        optimizer="muon", measured=(
        (23.8, 0.213), (44.8, 0.262), (64.6, 0.41), (85.6, 0.522), (106.6, 0.637), (127.7, 0.688), (148.3, 0.706))),
    # the DETR-style set head with anchored queries (benchmarks/NOTES.md, 13c, E2): 0.817 val / 0.790 test in
    # 147 CPU-s; the plain DETR head had 0.018 / 0.024 at the dense head's recipe (76 CPU-s)
    ("detect", "mid", "set"): _SET.replace(measured=(
        (12.3, 0.042), (24.2, 0.147), (34.6, 0.288), (45.4, 0.352), (56.1, 0.489), (66.2, 0.565), (76.5, 0.65),
        (87.4, 0.654), (97.9, 0.758), (107.5, 0.769), (117.2, 0.804), (127.2, 0.806), (136.9, 0.811),
        (146.8, 0.817))),
    # the same head and recipe on the other stages (NOTES 13d)
    ("detect", "early", "set"): _SET.replace(fusion="early", measured=(
        (11.7, 0.032), (22.3, 0.104), (32.5, 0.093), (43.5, 0.24), (53.7, 0.287), (64.8, 0.307), (75.2, 0.354),
        (87.0, 0.379), (97.2, 0.535), (109.0, 0.57), (120.9, 0.61), (132.7, 0.597), (143.0, 0.625),
        (152.9, 0.629))),
    ("detect", "cnn", "set"): _SET.replace(fusion="cnn", measured=(
        (11.5, 0.019), (22.0, 0.099), (32.2, 0.259), (42.5, 0.322), (51.8, 0.301), (61.8, 0.438), (72.1, 0.447),
        (82.8, 0.508), (93.7, 0.646), (103.7, 0.695), (114.2, 0.726), (125.6, 0.736), (135.5, 0.749),
        (145.7, 0.75))),
    ("detect", "late", "set"): _SET.replace(fusion="late", measured=(
        (11.9, 0.094), (21.2, 0.175), (30.9, 0.277), (40.2, 0.342), (49.5, 0.445), (58.4, 0.48), (67.8, 0.438),
        (77.6, 0.606), (87.7, 0.696), (97.2, 0.715), (106.1, 0.742), (115.2, 0.751), (124.4, 0.773),
        (133.4, 0.77))),
    # measured, not bundled: the queries on the pure ViT's one stride-8 grid reach 0.29 (NOTES 13d)
    ("detect", "vit", "set"): _SET.replace(fusion="vit", measured=(
        (10.7, 0.018), (19.6, 0.032), (28.5, 0.071), (37.3, 0.114), (46.3, 0.11), (54.8, 0.149), (63.5, 0.184),
        (72.6, 0.207), (81.1, 0.235), (89.7, 0.243), (98.6, 0.257), (106.9, 0.257), (115.7, 0.285),
        (124.3, 0.287))),
}


def task_recipe(task: str, fusion: str, head: str = "") -> TaskRecipe:
    """The measured recipe of (task, fusion, head), else the task's default settings for that stage."""
    if task not in HEADS:
        raise ValueError(f"task={task!r} has no recipe: expected one of {tuple(HEADS)}")
    if fusion not in FUSIONS:
        raise ValueError(f"fusion={fusion!r} is not allowed: expected one of {FUSIONS}")
    head = "" if head == HEADS[task][0] else head
    default = DEFAULTS[task]
    if (default.fusion, default.head) == (fusion, head):
        return default
    return RECIPES.get((task, fusion, head)) or default.replace(fusion=fusion, head=head, measured=())


def run_recipe(recipe: TaskRecipe, *, out_dir: Path | None = None, seed: int = 0, quiet: bool = True,
               progress=None, cancel=None, clock: str = "wall", cache_dir: str | Path | None = None,
               metadata: dict[str, Any] | None = None) -> TaskResult:
    """Render the scenes (cached; with `cache_dir` on disk too), build the model, train; test on an unseen split
    (the test split, seed + 1000). `metadata` goes into the checkpoint's record (e.g. the command)."""
    size = recipe.img_size
    train = scene_split("train", recipe.train_size, size, seed, cache_dir)
    val = scene_split("val", recipe.val_size, size, seed, cache_dir)
    test = scene_split("test", recipe.test_size, size, seed + 1000, cache_dir) if recipe.test_size else None
    torch.manual_seed(seed)
    head = {"head": recipe.head} if recipe.head else {}
    model = create_task_model(recipe.task, recipe.fusion, weights=recipe.weights, **head, **recipe.model)

    def report(info: dict[str, Any]) -> None:
        if progress is not None:
            progress(info)
        if not quiet and info["event"] == "epoch":
            print(f"epoch {info['epoch']:g}: loss {info['train_loss']:.4f}  val {recipe.metric} "
                  f"{info['val_metric']:.3f}  {info['time']:.0f} s", file=sys.stderr, flush=True)
    meta = {"recipe": dataclasses.asdict(recipe), "seed": seed, "threads": torch.get_num_threads(),
            "started": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()), **(metadata or {})}
    return fit_task(model, train, val, recipe.train_config(seed=seed), progress=report, cancel=cancel,
                    out_dir=out_dir, test=test, metadata=meta, clock=clock)
