"""The Train tab's two curves: the loss per step (smoothed) and per epoch, and validation accuracy against time
beside every fusion stage's typical curve (its recipe's measured run); series names in the page's language."""
from __future__ import annotations

import gradio as gr
import pandas as pd

from convformer.train import recipes

from ..i18n import text

COLOURS = {"train (per step, smoothed)": "#3b82f6", "validation": "#f97316"}  # the series, as the API names them
TYPICAL = {"late": "#86efac", "cnn": "#cbd5e1", "mid": "#d8b4fe", "early": "#fde68a", "vit": "#fca5a5"}  # faint


def colours() -> dict[str, str]:
    """The curves' colours by series name, in the page's language (the names are the legend)."""
    return {text("train.series_train"): COLOURS["train (per step, smoothed)"],
            text("train.series_val"): COLOURS["validation"],
            **{text("train.typical", fusion=f): c for f, c in TYPICAL.items()}}


def curves(steps: list[float], history: list[dict[str, float]], steps_per_epoch: float) -> tuple:
    """Updates of the two LinePlots (loss; validation accuracy in %), DataFrames of epoch, value, series."""
    every = max(1, len(steps) // 300)
    smooth, rows = None, []
    for i, loss in enumerate(steps):
        smooth = loss if smooth is None else 0.9 * smooth + 0.1 * loss
        if i % every == 0 or i == len(steps) - 1:
            rows.append(((i + 1) / steps_per_epoch, smooth, text("train.series_train")))
    rows += [(float(h["epoch"]), h["val_loss"], text("train.series_val")) for h in history]
    loss = pd.DataFrame(rows, columns=["epoch", "loss", "series"])
    # Gradio 6.31's plot keeps the colour domain of its first data until a prop changes: an (invisible)
    # change of the axis title per epoch makes the validation series appear
    return (gr.update(value=loss, x_title=text("train.axis_epoch") + "\u200b" * len(history),
                      y_title=text("train.axis_loss"), color_map=colours()),
            gr.update(value=accuracy(history), x_title=text("train.axis_seconds") + "\u200b" * len(history),
                      color_map=colours()))


def accuracy(history: list[dict[str, float]]) -> pd.DataFrame:
    """Validation accuracy (%) against seconds: this run's epochs, then every stage's typical curve with its
    recipe (measured on 2 CPU cores), so that a run is seen against what the stages usually do."""
    rows = [(round(h["time"], 1), 100 * h["val_acc"], text("train.series_val")) for h in history]
    for fusion in TYPICAL:
        name = text("train.typical", fusion=fusion)
        rows += [(0.0, 10.0, name), *((t, 100 * a, name) for t, a in recipes.RECIPES[fusion].curve)]
    return pd.DataFrame(rows, columns=["seconds", "accuracy", "series"])


def axes() -> tuple:
    """The two curves' axis titles and legend in the page's language, before any training."""
    return (gr.update(x_title=text("train.axis_epoch"), y_title=text("train.axis_loss"), color_map=colours()),
            gr.update(value=accuracy([]), x_title=text("train.axis_seconds"), y_title=text("train.axis_acc"),
                      color_map=colours()))
