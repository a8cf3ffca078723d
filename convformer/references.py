"""ImageNet-trained references: one real, published timm model per fusion stage, so that photos mean something.

- early: R+ViT-Ti/S16 (`vit_tiny_r_s16_p8_224`), a ViT whose patchify runs on a conv stem (Dosovitskiy et al.
  2021, the "hybrid"; Xiao et al. 2021, "Early Convolutions Help Transformers See Better");
- mid: CoAtNet-nano (`coatnet_nano_rw_224`), conv stages then transformer stages (Dai et al. 2021, "CoAtNet");
- late: ResNet-18 + DeiT-Ti over the same image, merged at the decision level: the average of their class
  probabilities (a two-member ensemble; no training needed);
- cnn: ResNet-18, A1 recipe (He et al. 2016; Wightman et al. 2021, "ResNet strikes back");
- vit: DeiT-Ti (`deit_tiny_patch16_224`; Touvron et al. 2021, "Training data-efficient image transformers").

The late reference's members are the cnn and vit references themselves, so it downloads nothing more and the
Compare tab shows exactly what merging the two adds.

Weights come only through timm's own pretrained path (`timm.create_model(name, pretrained=True)`) and the
standard Hugging Face cache, as safetensors (never a pickle): a machine that downloaded once works offline
(HF_HUB_OFFLINE=1). Before a download the Hub is asked once, with a short timeout, for the file's size, so an
unreachable Hub is one `WeightsUnavailable` line within seconds rather than a minute of retries.
Preprocessing comes from each model's timm data config; labels from timm's bundled ImageNet class names.
"""
from __future__ import annotations

import functools
import os
import weakref
from collections.abc import Callable
from dataclasses import dataclass

import timm
import torch
from huggingface_hub import constants, get_hf_file_metadata, hf_hub_download, hf_hub_url, try_to_load_from_cache
from PIL import Image
from timm.data import ImageNetInfo, create_transform, resolve_data_config
from torch import nn

from .messages import reason

WEIGHTS_FILE = "model.safetensors"
HUB_TIMEOUT = float(os.environ.get("CONVFORMER_HUB_TIMEOUT", "5"))  # seconds for the one size request


@dataclass(frozen=True)
class Reference:
    """One fusion stage's ImageNet reference. `names` are timm model names with their pretrained tag
    (late fusion: the CNN member, then the ViT member)."""
    fusion: str
    names: tuple[str, ...]
    title: str
    top1: float | None      # ImageNet-1k top-1 at 224 px, timm's results-imagenet.csv (late: not published)
    attention: str          # what its attention maps are, said next to them

    @property
    def label(self) -> str:
        return " + ".join(self.names)


REFERENCES: dict[str, Reference] = {r.fusion: r for r in (
    Reference("early", ("vit_tiny_r_s16_p8_224.augreg_in21k_ft_in1k",),
              "R+ViT-Ti: a 7 x 7 conv stem (stride 4), then an 8 x 8 patchify and 12 ViT-Ti blocks", 71.80,
              "Every block attends over one 7 x 7 patch grid plus the class token."),
    Reference("mid", ("coatnet_nano_rw_224.sw_in1k",),
              "CoAtNet-nano: two MBConv stages, then two transformer stages", 81.70,
              "CoAtNet's attention has no class token and adds a learned relative-position bias."),
    Reference("late", ("resnet18.a1_in1k", "deit_tiny_patch16_224.fb_in1k"),
              "ResNet-18 and DeiT-Ti over the same image; class probabilities averaged", None,
              "Attention comes from the DeiT branch (one 14 x 14 grid plus the class token); conv activations "
              "and Grad-CAM from the ResNet branch."),
    Reference("cnn", ("resnet18.a1_in1k",), "ResNet-18 (A1 recipe)", 71.50,
              "A CNN has no attention: conv activations and Grad-CAM only."),
    Reference("vit", ("deit_tiny_patch16_224.fb_in1k",), "DeiT-Ti/16", 72.19,
              "Every block attends over one 14 x 14 patch grid plus the class token."),
)}


class WeightsUnavailable(RuntimeError):
    """Pretrained weights could not be had (Hub unreachable and not cached, offline, or a failed download);
    the message is one line."""


class ProbabilityMean(nn.Module):
    """Decision-level fusion: the average of the members' class probabilities, returned as its log, so that
    a softmax of the output gives the average back and argmax / top-k work as on logits."""

    def forward(self, logits: list[torch.Tensor]) -> torch.Tensor:
        probs = torch.stack([x.softmax(-1) for x in logits]).mean(0)  # (B, num_classes)
        return probs.clamp_min(1e-30).log()


class LateFusion(nn.Module):
    """A pretrained CNN and a pretrained ViT over the same image, merged at the decision level."""

    def __init__(self, cnn: nn.Module, vit: nn.Module):
        super().__init__()
        a, b = resolve_data_config(model=cnn), resolve_data_config(model=vit)
        if (a["mean"], a["std"], a["input_size"]) != (b["mean"], b["std"], b["input_size"]):
            raise ValueError("late fusion needs members with the same input size and normalisation")
        self.cnn, self.vit, self.merge = cnn, vit, ProbabilityMean()
        self.num_classes = vit.num_classes
        self.pretrained_cfg = dict(vit.pretrained_cfg)  # preprocessing: the ViT's crop (the CNN's differs by 5%)

    def forward(self, x: torch.Tensor) -> torch.Tensor:   # (B, 3, H, W) -> (B, num_classes)
        return self.merge([self.cnn(x), self.vit(x)])


def hub_repo(name: str) -> str:
    """The Hugging Face repository timm loads `name`'s pretrained weights from, e.g. timm/resnet18.a1_in1k."""
    cfg = timm.models.get_pretrained_cfg(name)
    if cfg is None or not cfg.hf_hub_id:
        raise ValueError(f"{name!r} has no pretrained weights on the Hugging Face Hub in timm {timm.__version__}")
    return cfg.hf_hub_id


def cached_weights(name: str, cache_dir: str | None = None) -> str | None:
    """The weights file in the Hugging Face cache, or None when it has not been downloaded."""
    path = try_to_load_from_cache(hub_repo(name), WEIGHTS_FILE, cache_dir=cache_dir)
    return path if isinstance(path, str) else None


def cache_location(cache_dir: str | None = None) -> str:
    return str(cache_dir or constants.HF_HUB_CACHE)


def download_size(name: str, timeout: float = HUB_TIMEOUT, endpoint: str | None = None) -> int | None:
    """Ask the Hub (one request, `timeout` seconds, no retries) for the weights' size in bytes; an unreachable
    Hub or offline mode raises WeightsUnavailable."""
    if constants.HF_HUB_OFFLINE:
        raise WeightsUnavailable(f"{name} is not in the Hugging Face cache ({cache_location()}) and HF_HUB_OFFLINE "
                                 "is set: run once with the Hub reachable to download it")
    try:
        return get_hf_file_metadata(hf_hub_url(hub_repo(name), WEIGHTS_FILE, endpoint=endpoint), timeout=timeout).size
    except Exception as e:  # connection refused, DNS, timeout, proxy, HTTP error: all mean "cannot download"
        raise WeightsUnavailable(f"cannot download {name}: the Hugging Face Hub is unreachable "
                                 f"({reason(e)}) and it is not in the cache ({cache_location()})") from None


def create(name: str, pretrained: bool = True, cache_dir: str | None = None,
           on_download: Callable[[str, int | None], None] | None = None) -> nn.Module:
    """One timm model by name, in eval mode. With `pretrained`: from the Hugging Face cache when it is there
    (no network at all), else downloaded through timm's hf-hub path after one quick reachability check;
    `on_download(name, size_bytes)` is called before a download starts (its progress is huggingface_hub's
    tqdm bar: gr.Progress(track_tqdm=True) shows it on a page)."""
    if not pretrained:
        return timm.create_model(name).eval()
    path = cached_weights(name, cache_dir)
    if path is not None:
        overlay = {"file": path}  # timm's pretrained path, reading the cached safetensors
    else:
        size = download_size(name)
        if on_download is not None:
            on_download(name, size)
        overlay = {"hf_hub_filename": WEIGHTS_FILE}  # safetensors only, never a pickle fallback
    try:
        return timm.create_model(name, pretrained=True, pretrained_cfg_overlay=overlay, cache_dir=cache_dir).eval()
    except (OSError, RuntimeError, ValueError) as e:
        raise WeightsUnavailable(f"cannot load {name}: {reason(e)}") from None


def is_cached(fusion: str) -> bool:
    """Whether every weights file of the stage's reference is in the Hugging Face cache."""
    return all(cached_weights(name) for name in REFERENCES[fusion].names)


def fetch(fusion: str, on_download: Callable[[str, int | None], None] | None = None) -> None:
    """Put the stage's reference weights into the Hugging Face cache (the file timm's pretrained path reads:
    same repository, same file), without building a model. The app calls this on the request's own thread,
    where gr.Progress(track_tqdm=True) follows huggingface_hub's progress bar; `load_reference` then reads the
    cache. Raises WeightsUnavailable (one line) as `create` does."""
    for name in REFERENCES[fusion].names:
        if cached_weights(name) is None:
            size = download_size(name)
            if on_download is not None:
                on_download(name, size)
            try:
                hf_hub_download(hub_repo(name), WEIGHTS_FILE)
            except Exception as e:  # a dropped connection, a full disk: the download did not happen
                raise WeightsUnavailable(f"cannot download {name}: {reason(e)}") from None


def load_reference(fusion: str, pretrained: bool = True, cache_dir: str | None = None,
                   on_download: Callable[[str, int | None], None] | None = None) -> nn.Module:
    """The ImageNet reference for a fusion stage (see REFERENCES), in eval mode; `reference` names it."""
    if fusion not in REFERENCES:
        raise ValueError(f"fusion={fusion!r} is not allowed: expected one of {', '.join(REFERENCES)}")
    ref = REFERENCES[fusion]
    members = [create(name, pretrained, cache_dir, on_download) for name in ref.names]
    model = members[0] if len(members) == 1 else LateFusion(*members).eval()
    model.reference = ref
    return model


def params(fusion: str) -> int:
    """Parameters of a reference, counted on its architecture (no download)."""
    with torch.device("meta"):
        models = [timm.create_model(name) for name in REFERENCES[fusion].names]
    return sum(p.numel() for m in models for p in m.parameters())


_TRANSFORMS: "weakref.WeakKeyDictionary[nn.Module, tuple]" = weakref.WeakKeyDictionary()


def _transforms(model: nn.Module) -> tuple:
    if model not in _TRANSFORMS:
        full = create_transform(**resolve_data_config(model=model))  # Resize, CenterCrop, ToTensor, Normalize
        _TRANSFORMS[model] = full, type(full)(full.transforms[:-2])    # without the last two: what maps cover
    return _TRANSFORMS[model]


def preprocess(image: Image.Image, model: nn.Module) -> torch.Tensor:
    """A PIL image -> (1, 3, H, W) as the model was trained (timm's data config: resize, crop, normalise)."""
    return _transforms(model)[0](image.convert("RGB")).unsqueeze(0)


def view(image: Image.Image, model: nn.Module) -> Image.Image:
    """The part of the image the model sees (resized and centre-cropped): draw its maps over this."""
    return _transforms(model)[1](image.convert("RGB"))


@functools.cache
def imagenet_labels() -> tuple[str, ...]:
    """The 1000 ImageNet-1k class names bundled with timm, in class-index order."""
    info = ImageNetInfo()
    return tuple(info.index_to_description(i) for i in range(info.num_classes()))


def top_k(probs: torch.Tensor, k: int = 5) -> list[tuple[str, float]]:
    """(num_classes,) probabilities -> the k most likely ImageNet labels with their probability."""
    top = probs.float().topk(min(k, len(probs)))
    labels = imagenet_labels()
    return [(labels[i], p) for p, i in zip(top.values.tolist(), top.indices.tolist())]


__all__ = ["REFERENCES", "LateFusion", "ProbabilityMean", "Reference", "WeightsUnavailable", "cached_weights",
           "create", "download_size", "fetch", "hub_repo", "imagenet_labels", "is_cached", "load_reference",
           "params", "preprocess", "top_k", "view"]
