"""Named presets, registered with timm: `timm.create_model("convformer_mid_tiny", num_classes=10)`.

Each preset carries timm's preprocessing metadata (input size, mean, std, interpolation), so
`timm.data.resolve_data_config(model=model)` reads it and the app never hard-codes it.
"""
from __future__ import annotations

from typing import Any

from timm.models import generate_default_cfgs, register_model

from .config import ConvFormerConfig
from .model import ConvFormer

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
    "convformer_vit_tiny": ConvFormerConfig(  # DeiT-Ti: 5.7 M parameters, as timm's deit_tiny_patch16_224
        fusion="vit", embed_dim=192, depth=12, num_heads=3, patch_size=16, pool="cls"),
}


TIMM_KWARGS = {"pretrained_cfg", "pretrained_cfg_overlay", "cache_dir", "features_only", "checkpoint_path"}
default_cfgs = generate_default_cfgs({name: cfg.data_config() for name, cfg in PRESETS.items()})


# The checkpoints bundled in assets/checkpoints/{fusion}.safetensors: small models trained on the built-in
# shapes data at 64 px (model cards in assets/checkpoints/README.md). Every token grid is 8 x 8: three
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


def create(name: str, pretrained: bool = False, **overrides: Any) -> ConvFormer:
    """Build preset `name` (PRESETS or SHAPES_PRESETS) with config overrides. `pretrained` loads the bundled
    checkpoint of a shapes preset (the overrides must keep the weights' shapes, else CheckpointError); the
    architecture presets have no weights."""
    if name not in PRESETS and name not in SHAPES_PRESETS:
        raise ValueError(f"unknown preset {name!r}; available: {sorted(PRESETS) + sorted(SHAPES_PRESETS)}")
    overrides = {k: v for k, v in overrides.items() if k not in TIMM_KWARGS and v is not None}
    cfg = {**PRESETS, **SHAPES_PRESETS}[name].replace(**overrides)
    if pretrained and name not in SHAPES_PRESETS:
        raise ValueError(f"{name} has no pretrained weights; load a checkpoint with convformer.load_checkpoint")
    if pretrained:
        from .checkpoint import bundled_checkpoint, load_checkpoint
        path = bundled_checkpoint(cfg.fusion)
        if path is None:
            raise ValueError(f"{name}: no bundled checkpoint at assets/checkpoints/{cfg.fusion}.safetensors")
        model = load_checkpoint(path, cfg).train()
    else:
        model = ConvFormer(cfg)
    model.pretrained_cfg = {**model.pretrained_cfg, "architecture": name}
    return model


def _register(name: str, cfg: ConvFormerConfig) -> None:
    def entry(pretrained: bool = False, **kwargs: Any) -> ConvFormer:
        return create(name, pretrained, **kwargs)
    entry.__name__ = entry.__qualname__ = name
    entry.__doc__ = f"ConvFormer preset {name}: {cfg}"
    entry.__module__ = __name__
    register_model(entry)


default_cfgs.update(generate_default_cfgs({name: cfg.data_config() for name, cfg in SHAPES_PRESETS.items()}))
for _name, _cfg in {**PRESETS, **SHAPES_PRESETS}.items():
    _register(_name, _cfg)
