"""Images in: preprocess with the model's own data config (decoding is in `images`),
keeping the image's aspect by default (the models take any H, W) and saying what was done (`fit`);
and the device to run on."""
from __future__ import annotations

import os
from dataclasses import dataclass

import torch
from PIL import Image
from timm.data import resolve_data_config
from torchvision import transforms as T

from .images import to_rgb


RESIZES = ("keep", "squash")  # keep: short side to the input size, aspect kept; squash: exactly the input size
MAX_ASPECT = 3.0              # keep: the long side is at most this many times the short side


@dataclass(frozen=True)
class Resize:
    """What preprocessing does to one image, as data: sizes are (height, width) in pixels."""

    image_hw: tuple[int, int]   # the image as given
    input_hw: tuple[int, int]   # what the model gets
    grid_hw: tuple[int, int]    # the token grid (conv grid for a CNN) at that size
    mode: str                   # "keep" or "squash"
    capped: bool = False        # keep: the aspect was wider than MAX_ASPECT (or the model's limits) and was cut
    tokens: bool = True         # whether grid_hw is a token grid (else the last conv grid)

    def message(self) -> str:
        """'288 x 96 -> 192 x 64 px, aspect kept; token grid 4 x 12 (h x w)': image sizes width x height, as they
        are read; the grid height x width, as the shape table's axes (B, C, h, w) and every other grid line."""
        (ih, iw), (h, w), (gh, gw) = self.image_hw, self.input_hw, self.grid_hw
        grid = f"{'token' if self.tokens else 'conv'} grid {gh} x {gw} (h x w)"
        if self.mode == "squash":
            how = "squashed to the model's input size" if iw * h != ih * w else "resized"
        elif self.capped:
            how = f"aspect {max(iw, ih) / min(iw, ih):.2g}:1 cut to the limit, {max(w, h) / min(w, h):.2g}:1"
        else:
            how = "aspect kept"
        if (ih, iw) == (h, w):
            return f"{iw} x {ih} px, used as it is; {grid}"
        return f"{iw} x {ih} -> {w} x {h} px, {how}; {grid}"


def fit(image_size: tuple[int, int], model: torch.nn.Module, resize: str = "keep") -> Resize:
    """How an image of PIL `image_size` (width, height) is resized for `model`.

    keep: the short side becomes the short side of the model's input size and the ratio is kept, the long
    side rounded to whole tokens and capped at MAX_ASPECT x the short side and within the config's limits
    (tokens, activations), so a 288 x 96 photo is not squashed into a square. squash: the model's input
    size whatever the image (the old behaviour, and timm's crop_mode "squash")."""
    if resize not in RESIZES:
        raise ValueError(f"resize={resize!r} is not allowed: expected one of {RESIZES}")
    cfg = model.config
    _, h, w = resolve_data_config(model=model)["input_size"]
    iw, ih = image_size
    if resize == "squash":
        return Resize((ih, iw), (h, w), cfg.grid_size((h, w)), "squash", tokens=cfg.uses_transformer)
    short, stride = min(h, w), cfg.token_stride
    ratio = max(iw, ih) / min(iw, ih)
    long = max(short, round(short * ratio / stride) * stride)
    cap = max(short, int(short * MAX_ASPECT) // stride * stride)
    capped = long > cap
    long = min(long, cap)
    while long > short and not _within_limits(cfg, short, long):
        long, capped = max(short, long - stride), True
    size = (short, long) if iw >= ih else (long, short)
    return Resize((ih, iw), size, cfg.grid_size(size), "keep", capped, cfg.uses_transformer)


def _within_limits(cfg, short: int, long: int) -> bool:
    try:
        cfg.replace(img_size=(short, long))  # the config's own checks: side, tokens, activations
    except ValueError:
        return False
    return True


def transform(model: torch.nn.Module, size: tuple[int, int] | None = None) -> T.Compose:
    """The model's preprocessing, from its timm data config: resize the whole image (so maps line up with
    what the user sees) to `size` (H, W; default the model's input size), to tensor, normalise."""
    cfg = resolve_data_config(model=model)
    _, h, w = cfg["input_size"]
    mode = T.InterpolationMode(cfg.get("interpolation", "bicubic"))
    return T.Compose([T.Resize(size or (h, w), interpolation=mode, antialias=True), T.ToTensor(),
                      T.Normalize(cfg["mean"], cfg["std"])])


def preprocess(image: Image.Image, model: torch.nn.Module, resize: str = "keep") -> torch.Tensor:
    """PIL image of any mode -> (1, C, H, W) for `model`, on the model's device. H, W as `fit(...)` says:
    by default the aspect is kept; resize="squash" gives exactly the model's input size."""
    rgb = to_rgb(image)
    if model.config.in_chans == 1:
        rgb = rgb.convert("L")
    device = next(model.parameters()).device
    return transform(model, fit(rgb.size, model, resize).input_hw)(rgb).unsqueeze(0).to(device)


def resized(image: Image.Image, model: torch.nn.Module, resize: str = "keep") -> Image.Image:
    """The RGB image as the model sees it (the size `preprocess` gives it), for drawing maps on."""
    h, w = fit(image.size, model, resize).input_hw
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
