"""Seeing inside a model: one forward pass recorded (`inspect`: attention, conv activations, token grids,
Grad-CAM, the shape, parameters and FLOPs of every step), for our models (`convformer_engine`) and timm's
(`timm_engine`) with the same result type (`core`), and the pictures made from it (`viz`, pure numpy / PIL)."""
from __future__ import annotations

import torch
from torch import nn

from ..model import ConvFormer
from . import convformer_engine, timm_engine
from .core import Inspection, ShapeRow, TokenGrid, explain_attention, format_table, grad_cam, human


def inspect(model: nn.Module, images: torch.Tensor, cam_class: int | torch.Tensor | str | None = None,
            flops: bool = True, cam_layers: list[str] | None = None,
            relevance_class: int | torch.Tensor | str | None = None) -> Inspection:
    """Run ONE forward pass of `images` (B, C, H, W) and record what happens inside.

    cam_class: None for no Grad-CAM, "pred" for the predicted class, or a class index (int or (B,)).
    cam_layers: the conv activations to explain (names as in `activations`); default `default_cam_layers`
    (early, mid: the first conv stage; cnn, late: the last; measured, see there).
    relevance_class: None, "pred" or a class index, as cam_class: Chefer et al.'s class-specific relevance
    (`relevance`) over the blocks of the last token grid, from the same forward pass.
    FLOPs are counted with torch.utils.flop_counter on the first call per input shape, then cached;
    attention's matmuls are included because inspection runs the explicit attention path.
    A ConvFormer goes through `convformer_engine`, any other model (timm's, e.g. the ImageNet references)
    through `timm_engine`: the same result type.
    """
    engine = convformer_engine.inspect_convformer if isinstance(model, ConvFormer) else timm_engine.inspect_timm
    return engine(model, images, cam_class, flops, cam_layers, relevance_class)


def conv_layers(model: nn.Module) -> list[str]:
    """Every conv activation inspection records (conv stages, mid's refinement conv; a timm model's rows with
    convolutions and no attention), input first."""
    return (convformer_engine.conv_layers if isinstance(model, ConvFormer) else timm_engine.conv_layers)(model)


def default_cam_layers(model: nn.Module) -> list[str]:
    """The conv layer(s) Grad-CAM explains by default: see `convformer_engine.default_cam_layers`; a timm model's
    last conv layer."""
    return convformer_engine.default_cam_layers(model) if isinstance(model, ConvFormer) else conv_layers(model)[-1:]


steps = convformer_engine.steps

__all__ = ["Inspection", "ShapeRow", "TokenGrid", "conv_layers", "default_cam_layers", "explain_attention",
           "format_table", "grad_cam", "human", "inspect", "steps"]
