"""Property-based: any config either builds a model mapping (B, C, H, W) to (B, num_classes) (pooled features
with num_classes=0) or raises a ValueError naming a field; any accepted image preprocesses to the preset's
tensor, anything else is refused."""
import dataclasses
import io

import numpy as np
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

import convformer as cf

FIELDS = {f.name for f in dataclasses.fields(cf.ConvFormerConfig)}
small_int = st.integers(-2, 12)
configs = st.fixed_dictionaries({}, optional={
    "fusion": st.sampled_from([*cf.FUSIONS, "hybrid", ""]),
    "img_size": st.one_of(st.integers(-1, 72), st.tuples(st.integers(1, 72), st.integers(1, 72))),
    "in_chans": st.integers(0, 4),
    "num_classes": st.integers(0, 6),
    "conv_widths": st.lists(st.integers(0, 12), min_size=0, max_size=4).map(tuple),
    "conv_depths": st.lists(st.integers(-1, 2), min_size=0, max_size=4).map(tuple),
    "embed_dim": st.integers(-4, 24),
    "depth": small_int,
    "num_heads": st.integers(0, 6),
    "mlp_ratio": st.one_of(st.floats(-1, 5), st.just(float("nan"))),
    "patch_size": st.integers(0, 20),
    "pool": st.sampled_from(["cls", "avg", "max"]),
    "merge": st.sampled_from(["concat", "gate", "add", "mul"]),
    "drop_rate": st.floats(-0.5, 1.5),
    "depth_typo": st.just(1),
})


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(kwargs=configs, batch=st.integers(1, 2))
def test_any_config_builds_or_names_the_field(kwargs, batch):
    try:
        model = cf.build_model(**kwargs).eval()
    except ValueError as e:
        message = str(e)
        assert any(name in message for name in FIELDS | set(kwargs)), message
        return
    assert "depth_typo" not in kwargs
    cfg = model.config
    h, w = cfg.img_size
    with torch.no_grad():
        out = model(torch.randn(batch, cfg.in_chans, h, w))
    width = cfg.num_classes or model.head_hidden_size  # num_classes=0: pooled features, no classifier
    assert out.shape == (batch, width) and torch.isfinite(out).all()


MODES = ["RGB", "RGBA", "L", "LA", "P", "I;16", "CMYK", "1", "I", "F"]


@settings(max_examples=60, deadline=None)
@given(mode=st.sampled_from(MODES), width=st.integers(1, 80), height=st.integers(1, 80),
       fmt=st.sampled_from(["PNG", "TIFF", "GIF", "BMP", "JPEG", "WEBP"]), seed=st.integers(0, 2**16))
def test_any_accepted_image_preprocesses_to_the_preset_tensor(mode, width, height, fmt, seed):
    pixels = np.random.default_rng(seed).integers(0, 255, (height, width, 4), dtype=np.uint8)
    image = Image.fromarray(pixels, "RGBA").convert(mode) if mode not in ("I;16", "I", "F") else \
        Image.fromarray(pixels[..., 0].astype(np.uint16) * 200).convert(mode)
    buf = io.BytesIO()
    try:
        image.save(buf, fmt)
    except (OSError, ValueError, KeyError):
        return  # this format cannot store this mode: nothing to send
    model = cf.create("convformer_mid_tiny", img_size=(48, 40), num_classes=3)
    try:
        rgb = cf.load_image(buf.getvalue())
    except cf.ImageError as e:
        assert min(width, height) < cf.data.MIN_SIDE, str(e)
        return
    x = cf.preprocess(rgb, model, resize="squash")  # the preset tensor; keeping the aspect: test_resize.py
    assert x.shape == (1, 3, 48, 40) and x.dtype == torch.float32 and torch.isfinite(x).all()
