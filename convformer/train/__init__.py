"""Training: how to train (`config`: `TrainConfig`), the optimizers and schedule (`optim`), the loop (`loop`:
`fit`, `evaluate`), what a run leaves in its folder (`results`), the Muon optimizer (`muon`), each fusion
stage's measured one-minute recipe (`recipes`) and the `train` command (`cli`)."""
from .loop import (OPTIMIZERS, STOPS, Datasets, ImageTensors, TrainConfig, TrainResult, evaluate, fit, lr_factor,
                   make_datasets, materialize, normalizer, optimizers, param_groups, plot_curves, save_best)

__all__ = ["OPTIMIZERS", "STOPS", "Datasets", "ImageTensors", "TrainConfig", "TrainResult", "evaluate", "fit",
           "lr_factor", "make_datasets", "materialize", "normalizer", "optimizers", "param_groups", "plot_curves",
           "save_best"]
