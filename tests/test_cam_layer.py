"""Grad-CAM's default layer (issue 27): early and mid explain their first conv stage (it feeds global
attention), cnn and late's CNN branch their last; the bundled checkpoints' maps then land on the object in
most held-out Shapes images (measured in full by benchmarks/gradcam_layers.py)."""
from __future__ import annotations

import pytest
import torch

import convformer as cf
from benchmarks.gradcam_layers import score
from convformer.inspection import conv_layers, default_cam_layers
from convformer.export.checkpoint import bundled_checkpoint

TINY = dict(img_size=32, num_classes=3, conv_widths=(8, 16, 16), conv_depths=(0, 1, 1), embed_dim=16, depth=1,
            num_heads=2, patch_size=8)


@pytest.mark.parametrize("fusion, expected", [("early", "early.conv.stage0"), ("mid", "mid.conv.stage0"),
                                              ("late", "cnn.conv.stage2"), ("cnn", "cnn.conv.stage2")])
def test_the_rule(fusion, expected):
    model = cf.build_model(fusion=fusion, **TINY).eval()
    assert default_cam_layers(model) == [expected]
    assert list(cf.inspect(model, torch.randn(1, 3, 32, 32), cam_class="pred", flops=False).cam) == [expected]


def test_vit_has_no_conv_layer():
    assert default_cam_layers(cf.build_model(fusion="vit", **TINY)) == []


def test_bundled_mid_lands_on_the_object_where_refine_did_not():
    """20 held-out images: the default layer's peaks are on the object far more often than mid.refine's
    (measured on 200: 63 % against 14 %, chance 11 %)."""
    torch.manual_seed(0)
    rows = score("mid", 20)
    default = next(r for r in rows.values() if r["default"])
    assert default["peak"] >= 0.4 and rows["mid.refine"]["peak"] <= 0.3, rows
    assert set(rows) == set(conv_layers(cf.load_checkpoint(bundled_checkpoint("mid"))))
