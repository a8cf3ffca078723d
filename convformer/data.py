"""Images in: preprocess with the model's own data config (decoding is in `images`, re-exported here);
and the device to run on."""
from __future__ import annotations

import os

import torch
from PIL import Image
from timm.data import resolve_data_config
from torchvision import transforms as T

from .images import MAX_BYTES, MAX_PIXELS, MIN_SIDE, ImageError, load_image, to_rgb  # noqa: F401 - decoding lives in images.py


def transform(model: torch.nn.Module) -> T.Compose:
    """The model's preprocessing, from its timm data config: resize to its input size (the whole image,
    so maps line up with what the user sees), to tensor, normalise."""
    cfg = resolve_data_config(model=model)
    _, h, w = cfg["input_size"]
    mode = T.InterpolationMode(cfg.get("interpolation", "bicubic"))
    return T.Compose([T.Resize((h, w), interpolation=mode, antialias=True), T.ToTensor(),
                      T.Normalize(cfg["mean"], cfg["std"])])


def preprocess(image: Image.Image, model: torch.nn.Module) -> torch.Tensor:
    """PIL image of any mode -> (1, C, H, W) for `model`, on the model's device."""
    rgb = to_rgb(image)
    if model.config.in_chans == 1:
        rgb = rgb.convert("L")
    device = next(model.parameters()).device
    return transform(model)(rgb).unsqueeze(0).to(device)


def resized(image: Image.Image, model: torch.nn.Module) -> Image.Image:
    """The RGB image as the model sees it (its input size), for drawing maps on."""
    _, h, w = resolve_data_config(model=model)["input_size"]
    return to_rgb(image).resize((w, h), Image.Resampling.BICUBIC)


def pick_device(name: str | None = None) -> torch.device:
    """An explicit name, else $CONVFORMER_DEVICE, else CUDA, then Apple MPS, then CPU."""
    name = name or os.environ.get("CONVFORMER_DEVICE") or None
    if name:
        try:
            device = torch.device(name)
        except RuntimeError as e:
            raise ValueError(f"device={name!r} is not a device name (cpu, cuda, cuda:1, mps)") from e
        if device.type == "cuda" and not torch.cuda.is_available():
            raise ValueError(f"device={name!r} asked for, but CUDA is not available here")
        if device.type == "mps" and not torch.backends.mps.is_available():
            raise ValueError(f"device={name!r} asked for, but Apple MPS is not available here")
        return device
    if torch.cuda.is_available():
        return torch.device("cuda")
    if torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")
