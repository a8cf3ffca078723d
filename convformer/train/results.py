"""What a training run leaves in its folder: best.safetensors (+ .json), metrics.json and curves.png."""
from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Any

from ..export.checkpoint import save_checkpoint
from ..model import ConvFormer
from .config import TrainConfig


def save_best(model: ConvFormer, out_dir: Path, *, classes: list[str], best: dict[str, float],
              history: list[dict[str, float]], cfg: TrainConfig, metadata: dict[str, Any], train_time: float,
              test: dict[str, Any] | None = None, step_losses: list[float] | None = None, cancelled: bool = False,
              stop: str = "completed") -> Path:
    """best.safetensors (+ .json) of the best epoch so far; at the end (with `step_losses`) also metrics.json
    and curves.png."""
    metrics = {k: best[k] for k in ("val_acc", "val_loss", "train_loss", "epoch")}
    if test is not None:
        metrics.update(test_acc=test["acc"], test_loss=test["loss"], test_n=test["n"])
    meta = {"classes": classes, **metadata, "metrics": metrics, "epochs": history[-1]["epoch"],
            "train_time": round(train_time, 1), "train_config": asdict(cfg)}
    path = save_checkpoint(model, out_dir / "best.safetensors", **meta)
    if step_losses is not None:
        (out_dir / "metrics.json").write_text(json.dumps(
            {"best": best, "test": test, "history": history, "cancelled": cancelled, "stop": stop,
             "train_time": train_time, "step_losses": step_losses, "config": model.config.to_dict(), "meta": meta},
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

