"""Named presets, registered with timm: `timm.create_model("convformer_mid_tiny", num_classes=10)`.

Each preset is built by timm's `build_model_with_cfg`, so everything timm's factory offers works:
`pretrained=True` (the bundled checkpoints are the `bundled` tag of the `*_shapes` presets),
`pretrained_cfg_overlay=dict(file="my.safetensors")` for any preset, `in_chans` adapting the first conv of
loaded weights, `features_only=True` (timm's FeatureGetterNet over `forward_intermediates`), `device=`,
`dtype=`. Each preset carries timm's preprocessing metadata (input size, mean, std, interpolation), so
`timm.data.resolve_data_config(model=model)` reads it and the app never hard-codes it. Keywords are config
fields (ConvFormerConfig) or timm's factory arguments; anything else raises UnknownFieldError, a TypeError.
"""
from __future__ import annotations

from dataclasses import fields
from functools import partial
from typing import Any

from timm.models import build_model_with_cfg, generate_default_cfgs, register_model

from .config import ConvFormerConfig
from .model import ConvFormer, default_out_indices, timm_config

PRESETS: dict[str, ConvFormerConfig] = {
    "convformer_early_tiny": ConvFormerConfig(
        fusion="early", conv_widths=(24, 48, 96, 192), conv_depths=(0, 0, 0, 0),
        embed_dim=192, depth=11, num_heads=3, pool="cls"),  # Xiao et al. ViT_C: conv stem + depth - 1 blocks
    "convformer_early_small": ConvFormerConfig(
        fusion="early", conv_widths=(48, 96, 192, 384), conv_depths=(0, 0, 0, 0),
        embed_dim=384, depth=11, num_heads=6, pool="cls"),
    "convformer_mid_tiny": ConvFormerConfig(
        fusion="mid", conv_widths=(32, 64, 128, 192), conv_depths=(1, 1, 2, 2),
        embed_dim=192, depth=4, num_heads=3),
    "convformer_mid_small": ConvFormerConfig(
        fusion="mid", conv_widths=(48, 96, 192, 384), conv_depths=(1, 2, 3, 2),
        embed_dim=384, depth=6, num_heads=6),
    "convformer_late_tiny": ConvFormerConfig(
        fusion="late", conv_widths=(32, 64, 128, 256), conv_depths=(1, 1, 2, 2),
        embed_dim=192, depth=6, num_heads=3, patch_size=16, pool="cls", merge="concat"),
    "convformer_late_small": ConvFormerConfig(
        fusion="late", conv_widths=(64, 128, 256, 512), conv_depths=(1, 1, 2, 2),
        embed_dim=384, depth=8, num_heads=6, patch_size=16, pool="cls", merge="gate"),
    "convformer_cnn_tiny": ConvFormerConfig(
        fusion="cnn", conv_widths=(32, 64, 128, 256, 512), conv_depths=(1, 1, 2, 2, 1)),
    "convformer_vit_tiny": ConvFormerConfig(  # DeiT-Ti: with deit_tiny_patch16_224's weights, its logits
        fusion="vit", embed_dim=192, depth=12, num_heads=3, patch_size=16, pool="cls"),
}
PAPERS = {"early": ("Early Convolutions Help Transformers See Better", "arXiv:2106.14881"),
          "vit": ("Training data-efficient image transformers & distillation through attention", "arXiv:2012.12877")}


# The checkpoints bundled in convformer/weights/{fusion}.safetensors: small models trained on the built-in
# shapes data at 64 px (model cards in convformer/weights/README.md). Every token grid is 8 x 8: three
# stride-2 conv stages for early / mid, 8 px patches for vit and late's ViT branch. Kept apart from
# PRESETS (the architecture presets); `timm.create_model(name, pretrained=True)` loads the bundled weights.
_SHAPES = dict(img_size=64, num_classes=10)
SHAPES_PRESETS: dict[str, ConvFormerConfig] = {
    "convformer_early_shapes": ConvFormerConfig(
        fusion="early", conv_widths=(16, 32, 64), conv_depths=(0, 1, 1), embed_dim=64, depth=3, num_heads=2,
        pool="cls", **_SHAPES),
    "convformer_mid_shapes": ConvFormerConfig(
        fusion="mid", conv_widths=(16, 32, 64), conv_depths=(1, 1, 1), embed_dim=64, depth=2, num_heads=2,
        **_SHAPES),
    "convformer_late_shapes": ConvFormerConfig(
        fusion="late", conv_widths=(16, 32, 64), conv_depths=(0, 1, 1), embed_dim=64, depth=2, num_heads=2,
        patch_size=8, pool="avg", merge="concat", **_SHAPES),
    "convformer_cnn_shapes": ConvFormerConfig(
        fusion="cnn", conv_widths=(16, 32, 64, 128), conv_depths=(1, 1, 1, 1), **_SHAPES),
    "convformer_vit_shapes": ConvFormerConfig(
        fusion="vit", embed_dim=64, depth=4, num_heads=2, patch_size=8, pool="avg", **_SHAPES),
}
ALL = {**PRESETS, **SHAPES_PRESETS}


def preset_name(fusion: str, family: str = "tiny") -> str:
    """The one place a preset's name is made: `convformer_{fusion}_{family}` (family: tiny, small or shapes)."""
    return f"convformer_{fusion}_{family}"
BUNDLED_TAG = "bundled"
_FIELDS = {f.name for f in fields(ConvFormerConfig)}


def _pretrained_cfgs(name: str, cfg: ConvFormerConfig) -> dict[str, dict[str, Any]]:
    """The timm pretrained_cfg(s) of a preset: untagged (no weights), or for a shapes preset whose
    checkpoint is bundled, the `bundled` tag with `file=` (its header is read only when it is loaded)."""
    base = timm_config(cfg)
    if cfg.fusion in PAPERS and name in PRESETS:
        base["paper_name"], base["paper_ids"] = PAPERS[cfg.fusion]
    from .export.checkpoint import bundled_checkpoint
    path = bundled_checkpoint(cfg.fusion) if name in SHAPES_PRESETS else None
    if path is None:
        return {name: base}
    return {f"{name}.{BUNDLED_TAG}": {**base, "file": str(path),
                                      "description": "trained on the built-in shapes data (bundled with the package)"}}


def checkpoint_filter_fn(state_dict: dict[str, Any], model: ConvFormer) -> dict[str, Any]:
    """timm's pretrained filter: our own state dicts pass unchanged; a timm VisionTransformer's (DeiT, ViT)
    is renamed onto a vit-fusion model: patch_embed -> branches.vit.patch, cls_token / pos_embed ->
    branches.vit.tokens, blocks / norm -> branches.vit.blocks / norm; head stays head."""
    if "patch_embed.proj.weight" not in state_dict:
        return state_dict
    if model.config.fusion != "vit":
        raise ValueError("a timm ViT state dict fits fusion='vit' only")
    renamed = {}
    for key, value in state_dict.items():
        if key.startswith(("cls_token", "pos_embed")):
            key = "branches.vit.tokens." + key
        elif key.startswith("patch_embed."):
            key = "branches.vit.patch." + key[len("patch_embed."):]
        elif key.startswith(("blocks.", "norm.")):
            key = "branches.vit." + key
        renamed[key] = value
    return renamed


def _build(name: str, pretrained: bool = False, **kwargs: Any) -> ConvFormer:
    """timm's builder over a preset: config fields and timm's factory keywords; see the module docstring."""
    cfg = ALL[name]
    known = {k: v for k, v in kwargs.items() if k in _FIELDS}
    if kwargs.get("features_only") and "out_indices" not in kwargs:
        kwargs["out_indices"] = default_out_indices(cfg.replace(**known))
    feature_cfg = {"feature_cls": "getter", **(kwargs.pop("feature_cfg", None) or {})}  # the caller's keys win
    kwargs.setdefault("pretrained_filter_fn", checkpoint_filter_fn)
    model = build_model_with_cfg(partial(ConvFormer, cfg), name, pretrained, feature_cfg=feature_cfg, **kwargs)
    net = getattr(model, "model", model)  # features_only wraps the model
    if isinstance(net, ConvFormer):  # the built config's own sizes, over the registry's for the preset
        own = timm_config(net.config)
        keep = {k: v for k, v in model.pretrained_cfg.items() if k not in own and v is not None}
        net.pretrained_cfg = net.default_cfg = {**own, **keep, "num_classes": net.num_classes}
        if pretrained and str(keep.get("file", "")).endswith(".safetensors"):
            from .export.checkpoint import CheckpointError, read_info
            try:
                net.meta = read_info(keep["file"])["meta"]  # class names, metrics, ... as load_checkpoint gives
            except CheckpointError:
                net.meta = {}  # plain safetensors weights without our header
            if net.meta.get("classes") and len(net.meta["classes"]) == net.num_classes:
                net.pretrained_cfg["label_names"] = tuple(net.meta["classes"])
    return model


def create(name: str, pretrained: bool = False, **overrides: Any) -> ConvFormer:
    """Build preset `name` (PRESETS or SHAPES_PRESETS) through timm (`timm.create_model`): config overrides
    (None means not given) and timm's factory keywords. `pretrained` loads the bundled checkpoint of a shapes
    preset; the architecture presets have no weights (load yours with pretrained_cfg_overlay=dict(file=...)
    or convformer.load_checkpoint)."""
    import timm
    if name.split(".")[0] not in ALL:
        raise ValueError(f"unknown preset {name!r}; available: {sorted(PRESETS) + sorted(SHAPES_PRESETS)}")
    if pretrained and name.split(".")[0] not in SHAPES_PRESETS and not overrides.get("pretrained_cfg_overlay"):
        raise ValueError(f"{name} has no pretrained weights; load a checkpoint with convformer.load_checkpoint")
    return timm.create_model(name, pretrained=pretrained, **overrides)


def _register(name: str, cfg: ConvFormerConfig) -> None:
    def entry(pretrained: bool = False, **kwargs: Any) -> ConvFormer:
        return _build(name, pretrained, **kwargs)
    entry.__name__ = entry.__qualname__ = name
    entry.__doc__ = f"ConvFormer preset {name}: {cfg}"
    entry.__module__ = __name__
    register_model(entry)


default_cfgs = generate_default_cfgs({k: v for name, cfg in ALL.items()
                                      for k, v in _pretrained_cfgs(name, cfg).items()})
for _name, _cfg in ALL.items():
    _register(_name, _cfg)
