"""Images in: decode safely, convert any mode to RGB, preprocess with the model's own data config;
and the device to run on."""
from __future__ import annotations

import io
import os
import warnings
from pathlib import Path

import torch
from PIL import Image, UnidentifiedImageError
from timm.data import resolve_data_config
from torchvision import transforms as T

from .folders import to_rgb

MAX_PIXELS = 40_000_000   # about 6300 x 6300; larger images are refused before decoding
MIN_SIDE = 8              # smaller images carry no usable content
MAX_BYTES = 50_000_000    # encoded file size


class ImageError(ValueError):
    """An input that is not a usable image; the message says why, for the person who sent it."""


def load_image(source: str | Path | bytes | Image.Image) -> Image.Image:
    """Decode a file path, bytes or PIL image into an RGB image, refusing what is not safely usable:
    non-images, truncated files, decompression bombs, tiny images. Animated images give their first frame."""
    if isinstance(source, Image.Image):
        img = source
    else:
        data = source if isinstance(source, bytes) else _read(Path(source))
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("error", Image.DecompressionBombWarning)
                img = Image.open(io.BytesIO(data))
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:  # PIL's own size check
            raise ImageError(f"the image is too large; the limit is {MAX_PIXELS / 1e6:.0f} megapixels") from e
        except (UnidentifiedImageError, OSError) as e:
            raise ImageError("this file is not an image that can be read (PNG, JPEG, GIF, BMP, TIFF, WebP)") from e
    width, height = img.size
    if width * height > MAX_PIXELS:
        raise ImageError(f"the image is {width} x {height} px; the limit is {MAX_PIXELS / 1e6:.0f} megapixels")
    if min(width, height) < MIN_SIDE:
        raise ImageError(f"the image is {width} x {height} px; each side needs at least {MIN_SIDE} px")
    try:
        img.seek(0)
        img.load()
        return to_rgb(img)
    except (OSError, ValueError, SyntaxError, EOFError) as e:
        raise ImageError("the image file is truncated or corrupt and cannot be decoded") from e


def _read(path: Path) -> bytes:
    if not path.is_file():
        raise ImageError(f"no image file at {path.name!r}")
    if path.stat().st_size > MAX_BYTES:
        raise ImageError(f"the file is {path.stat().st_size / 1e6:.0f} MB; the limit is {MAX_BYTES / 1e6:.0f} MB")
    return path.read_bytes()


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
