"""`python -m convformer train`: the command line around `train.fit` (argument parsing, data, model, report).

`--recipe FUSION` starts from that stage's measured one-minute recipe (`convformer.recipe.RECIPES`): its
model, image size, data size and training settings; any flag given explicitly still wins.
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

import torch

from ..config import FUSIONS
from ..data.datasets import make_datasets
from ..flags import add_config_flags, add_model_flags, overrides as config_overrides, preset_of
from ..presets import create, preset_name
from .config import OPTIMIZERS, TrainConfig
from .loop import fit

__all__ = ["add_parser", "train_command"]

CONFIG = ("embed_dim", "depth", "num_heads", "patch_size", "mlp_ratio", "drop_rate", "drop_path_rate", "conv_widths",
          "conv_depths", "pool", "merge")  # the model's config flags (convformer.flags), besides --img-size
# data and model flags a recipe fills in when they are not given: flag -> default without a recipe
_FROM_RECIPE = {"img_size": [64], "train_size": 10000, "val_size": 1000}
# TrainConfig fields a recipe sets (Recipe.train_config); a flag given explicitly wins
_TRAINING = ("epochs", "lr", "batch_size", "warmup_epochs", "label_smoothing", "augment", "optimizer")


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Register `train` on the `python -m convformer` sub-command parser."""
    p = subparsers.add_parser("train", help="train a model; writes best.safetensors, metrics.json, curves.png",
                              description="Train on the built-in shapes data or an image folder / zip.")
    p.add_argument("--recipe", choices=FUSIONS, help="the measured one-minute recipe of this fusion stage "
                   "(model, image size, data size, epochs, lr, ...); flags given explicitly override it")
    add_model_flags(p, fusion=None, fusion_help="default: mid, or the preset's",
                    preset_help="start from this preset's config (default: convformer_<fusion>_tiny)",
                    checkpoint_help=None)
    p.add_argument("--dataset", default="shapes", help="'shapes', or a folder root/<class>/*.png, or a .zip")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--init", metavar="CHECKPOINT", help="start from these weights and their config (fine-tune); "
                   "config flags are then not allowed")
    p.add_argument("--epochs", type=int, help="default 10")
    add_config_flags(p, ("img_size",), help={"img_size": "one side, or H W (default 64)"})
    p.add_argument("--lr", type=float, help="default 2e-3")
    p.add_argument("--min-lr", type=float, default=1e-5)
    p.add_argument("--weight-decay", type=float, default=0.05)
    p.add_argument("--optimizer", choices=OPTIMIZERS, help="adamw (default), or muon: Muon on the hidden weight "
                   "matrices, AdamW on the rest")
    p.add_argument("--batch-size", type=int, help="default 128")
    p.add_argument("--warmup-epochs", type=float, help="default 1")
    p.add_argument("--label-smoothing", type=float, help="default 0.1")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-augment", dest="augment", action="store_false", default=None)
    p.add_argument("--no-hflip", dest="hflip", action="store_false")
    p.add_argument("--channels-last", action="store_true", help="NHWC model and batches")
    p.add_argument("--train-size", type=int, help="shapes: training images (default 10000)")
    p.add_argument("--val-size", type=int, help="shapes: validation images (default 1000)")
    p.add_argument("--test-size", type=int, default=2000, help="shapes: images of a fresh test split (0: none)")
    p.add_argument("--test-seed", type=int, help="shapes: seed of the test split (default: seed + 1000)")
    p.add_argument("--val-fraction", type=float, default=0.2, help="folders: share of each class for val")
    p.add_argument("--num-workers", type=int, default=0)
    p.add_argument("--threads", type=int, help="torch CPU threads")
    p.add_argument("--device", help="cpu, cuda, mps (default: the best available)")
    p.add_argument("--no-amp", dest="amp", action="store_false")
    p.add_argument("--distributed", action="store_true", help="DDP (implied under torchrun with >1 process)")
    p.add_argument("--time-limit", type=float, help="seconds")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    add_config_flags(p, CONFIG, checked=True)
    p.set_defaults(func=train_command)
    return p


def _fill(args: argparse.Namespace) -> None:
    """Flags not given: from --recipe, else the plain defaults."""
    recipe = None
    if args.recipe:
        from .recipes import RECIPES
        recipe = RECIPES[args.recipe]
        if args.fusion and args.fusion != args.recipe or args.preset or args.init:
            raise ValueError("--recipe picks the model: drop --fusion / --preset / --init")
    for flag, default in _FROM_RECIPE.items():
        if getattr(args, flag) is None:
            value = getattr(recipe, flag) if recipe else default
            setattr(args, flag, [value] if flag == "img_size" and isinstance(value, int) else value)
    args.recipe_obj = recipe


def train_config(args: argparse.Namespace) -> TrainConfig:
    """The TrainConfig the flags describe: the recipe's (Recipe.train_config, the one place a recipe becomes a
    TrainConfig) or TrainConfig's defaults, with every training flag given explicitly winning."""
    recipe = args.recipe_obj
    given = {k: getattr(args, k) for k in _TRAINING if getattr(args, k) is not None}
    lr = given.get("lr", recipe.lr if recipe else TrainConfig.lr)
    rest = dict(min_lr=min(args.min_lr, lr), weight_decay=args.weight_decay, seed=args.seed, hflip=args.hflip,
                num_workers=args.num_workers, amp=args.amp, device=args.device, channels_last=args.channels_last,
                distributed=args.distributed, time_limit=args.time_limit, progress_bar=not args.quiet)
    return recipe.train_config(**given, **rest) if recipe else TrainConfig(**given, **rest)


def train_command(args: argparse.Namespace) -> None:
    _fill(args)
    if args.threads:
        torch.set_num_threads(args.threads)
    size = tuple(args.img_size) if len(args.img_size) == 2 else args.img_size[0]
    overrides: dict[str, Any] = {**config_overrides(args, CONFIG), "fusion": args.fusion, "img_size": size}
    cfg = train_config(args)
    name = preset_of(args)
    if args.recipe_obj is not None:
        name = preset_name(args.recipe, "shapes")
        overrides = {**args.recipe_obj.model, **{k: v for k, v in overrides.items() if v is not None},
                     "fusion": args.recipe}
    if args.init:
        from ..export.checkpoint import load_checkpoint
        given = sorted(k for k, v in overrides.items() if v is not None and k != "img_size")
        if given or args.preset:
            raise ValueError(f"--init takes the checkpoint's config; drop {given or ['preset']}")
        init = load_checkpoint(args.init).train()
        size, name = init.config.img_size, f"init:{Path(args.init).name}"
    in_chans = (init.config if args.init else create(name, img_size=size, **{
        k: v for k, v in overrides.items() if k != "img_size"}).config).in_chans  # validated before data loads
    data = make_datasets(args.dataset, size, in_chans=in_chans, train_size=args.train_size,
                         val_size=args.val_size, test_size=args.test_size, seed=args.seed,
                         test_seed=args.test_seed, val_fraction=args.val_fraction, num_workers=args.num_workers)
    torch.manual_seed(args.seed)  # the same initial weights for the same seed
    if args.init:
        model = init
        if model.config.num_classes != len(data.classes):
            model.reset_classifier(len(data.classes))
    else:
        model = create(name, num_classes=len(data.classes), **overrides)
    command = "python -m convformer " + " ".join(sys.argv[1:]) if sys.argv[1:2] == ["train"] else None
    meta = {"dataset": data.name, "data": data.info, "preset": name,
            "params": sum(p.numel() for p in model.parameters())}
    if args.recipe:
        meta["recipe"] = args.recipe
    if command:
        meta["command"] = command
    if args.init:  # what this run started from, so the total training is on record
        meta["init"] = {"checkpoint": str(args.init), **{k: init.meta.get(k) for k in (
            "command", "metrics", "epochs", "train_time", "init")}}

    def report(info: dict[str, Any]) -> None:  # with --quiet, one line per epoch instead of the bar
        if info["event"] == "epoch":
            h = info["history"][-1]
            print(f"epoch {h['epoch']:g}/{info['epochs']}: train_loss {h['train_loss']:.4f}  val_loss "
                  f"{h['val_loss']:.4f}  val_acc {h['val_acc']:.2%}  {info['elapsed']:.0f} s", flush=True)
    result = fit(model, data.train, data.val, cfg, out_dir=args.out, test_set=data.test, metadata=meta,
                 progress=report if args.quiet else None)
    if int(os.environ.get("RANK", "0")) == 0:
        line = f"best val_acc {result.best['val_acc']:.2%} (epoch {result.best['epoch']:g})"
        reached = next((h["time"] for h in result.history if h["val_acc"] >= 0.9), None)
        if reached is not None:
            line += f", 90% after {reached:.0f} s"
        if result.test is not None:
            line += f", test_acc {result.test['acc']:.2%} on {result.test['n']} images"
        print(f"{line}; {result.train_time:.0f} s; wrote {Path(args.out) / 'best.safetensors'}")
