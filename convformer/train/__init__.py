"""Training: the loop (`loop`: `fit`, `evaluate`, `TrainConfig`), the Muon optimizer (`muon`), each fusion
stage's measured one-minute recipe (`recipes`) and the `train` command (`cli`)."""
from .loop import (OPTIMIZERS, STOPS, Datasets, ImageTensors, TrainConfig, TrainResult, evaluate, fit, lr_factor,
                   make_datasets, materialize, optimizers, param_groups, plot_curves)

__all__ = ["OPTIMIZERS", "STOPS", "Datasets", "ImageTensors", "TrainConfig", "TrainResult", "evaluate", "fit",
           "lr_factor", "make_datasets", "materialize", "optimizers", "param_groups", "plot_curves"]
