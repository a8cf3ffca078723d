"""Non-square images keep their aspect by default (the models take any H, W), and preprocessing says what it did;
"squash" gives the model's input size as before."""
from __future__ import annotations

import pytest
import torch
from PIL import Image

import convformer as cf
from convformer.config import LIMITS
from convformer.data import MAX_ASPECT, fit, preprocess, resized


def stride16(**overrides) -> cf.ConvFormer:
    """A 64 px model with 16 px tokens (four conv stages)."""
    return cf.create("convformer_mid_shapes", conv_widths=(8, 8, 16, 16), conv_depths=(0, 0, 0, 0), embed_dim=16,
                     **overrides).eval()


def test_a_wide_photo_keeps_its_aspect_and_says_so():
    model = stride16()
    side, stride = model.config.img_size[0], model.config.token_stride
    r = fit((3 * 96, 96), model)  # 288 x 96, 3:1
    assert r.input_hw == (side, 3 * side) and r.grid_hw == (side // stride, 3 * side // stride)
    assert r.message() == (f"288 x 96 -> {3 * side} x {side} px, aspect kept; "
                           f"token grid {side // stride} x {3 * side // stride} (h x w)")
    x = preprocess(Image.new("RGB", (288, 96)), model)
    assert x.shape == (1, 3, side, 3 * side)
    assert resized(Image.new("RGB", (288, 96)), model).size == (3 * side, side)


def test_tall_images_turn_the_other_way():
    model = stride16()
    side = model.config.img_size[0]
    assert fit((96, 288), model).input_hw == (3 * side, side)


def test_squash_is_the_old_behaviour():
    model = stride16()
    r = fit((288, 96), model, "squash")
    assert r.input_hw == tuple(model.config.img_size) and "squashed" in r.message()
    assert preprocess(Image.new("RGB", (288, 96)), model, resize="squash").shape == (1, 3, *model.config.img_size)


def test_the_long_side_is_capped():
    model = stride16()
    side = model.config.img_size[0]
    r = fit((2000, 100), model)  # 20:1
    assert r.capped and r.input_hw[0] == side and r.input_hw[1] <= MAX_ASPECT * side
    assert "cut to the limit" in r.message()


def test_the_cap_respects_the_models_token_limit():
    """A model already near LIMITS["tokens"] at its square size cannot grow its long side as far."""
    side, patch = 1024, 16  # 64 x 64 = 4096 tokens: at the limit already
    model = cf.ConvFormer(fusion="vit", img_size=side, patch_size=patch, embed_dim=8, depth=1, num_heads=1)
    r = fit((3 * side, side), model)
    assert r.capped and r.grid_hw[0] * r.grid_hw[1] <= LIMITS["tokens"]


def test_squares_and_exact_sizes_are_left_alone():
    model = stride16()
    side = model.config.img_size[0]
    r = fit((side, side), model)
    assert r.input_hw == (side, side) and "used as it is" in r.message()


def test_the_model_runs_on_the_grid_fit_reports():
    model = stride16()
    image = Image.new("RGB", (300, 120))
    r = fit(image.size, model)
    result = cf.inspect(model, preprocess(image, model), flops=False)
    grid = next(iter(result.token_grid.values()))
    assert (grid.h, grid.w) == r.grid_hw
    assert torch.isfinite(result.logits).all()


def test_unknown_mode_is_refused():
    with pytest.raises(ValueError, match="resize='stretch'"):
        fit((10, 10), stride16(), "stretch")


def test_predict_says_how_it_resized(tmp_path, capsys):
    from convformer.__main__ import main
    path = tmp_path / "wide.png"
    Image.new("RGB", (288, 96), (200, 30, 30)).save(path)
    assert main(["predict", str(path), "--fusion", "mid", "--top-k", "1"]) == 0
    err = capsys.readouterr().err
    assert "288 x 96 -> " in err and "aspect kept" in err
    assert main(["predict", str(path), "--fusion", "mid", "--resize", "squash"]) == 0
    assert "squashed" in capsys.readouterr().err


def test_info_follows_the_images_grid(tmp_path, capsys):
    from convformer.__main__ import main
    path = tmp_path / "wide.png"
    Image.new("RGB", (288, 96)).save(path)
    side = 64
    assert main(["info", "--preset", "convformer_vit_tiny", "--img-size", str(side), "--image", str(path)]) == 0
    out = capsys.readouterr().out
    gh, gw = side // 16, 3 * side // 16  # convformer_vit_tiny: 16 px patches
    assert f"288 x 96 -> {3 * side} x {side} px, aspect kept" in out
    assert f"(B=1, C=3, H={side}, W={3 * side})" in out and f"N=1+{gh}x{gw}={1 + gh * gw}" in out
