"""The models: every fusion stage and preset builds, maps (B, C, H, W) to (B, num_classes) for square,
non-square and odd sizes, trains (a gradient everywhere), and agrees with timm where it should."""
import re

import pytest
import timm
import torch

import convformer as cf
from convformer.config import FUSIONS

TINY = dict(img_size=48, conv_widths=(8, 16, 16), conv_depths=(1, 0, 1), embed_dim=24, depth=2, num_heads=2,
            patch_size=8, num_classes=5)


def tiny(fusion: str, **overrides) -> cf.ConvFormer:
    torch.manual_seed(0)
    return cf.build_model(fusion=fusion, **{**TINY, **overrides})


@pytest.mark.parametrize("fusion", FUSIONS)
@pytest.mark.parametrize("size", [(48, 48), (40, 72), (33, 57), (9, 8)])
def test_output_shape_for_any_size(fusion, size):
    model = tiny(fusion).eval()
    if min(size) < model.config.min_size:
        size = (model.config.min_size, model.config.min_size + 3)
    with torch.no_grad():
        out = model(torch.randn(2, 3, *size))
    assert out.shape == (2, 5)
    assert torch.isfinite(out).all()


# mid refuses a class token (tested below); merge only exists in late fusion
COMBOS = [(f, p, m) for f in FUSIONS for p in ("avg", "cls") for m in ("concat", "gate", "add")
          if not (f == "mid" and p == "cls") and (f == "late" or m == "concat")]


@pytest.mark.parametrize("fusion, pool, merge", COMBOS)
def test_every_parameter_gets_a_gradient(fusion, pool, merge):
    model = tiny(fusion, pool=pool, merge=merge, drop_path_rate=0.1, drop_rate=0.1)
    model(torch.randn(2, 3, 48, 40)).logsumexp(-1).sum().backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None or not torch.isfinite(p.grad).all()]
    assert not missing


@pytest.mark.parametrize("name", sorted(cf.PRESETS))
def test_presets_build_with_timm(name):
    model = timm.create_model(name, num_classes=10).eval()
    data = timm.data.resolve_data_config(model=model)
    assert data["input_size"] == (3, 224, 224) and data["mean"] == model.config.mean
    with torch.no_grad():
        assert model(torch.randn(1, 3, 64, 96)).shape == (1, 10)


def test_vit_baseline_is_deit_tiny():
    ours = sum(p.numel() for p in timm.create_model("convformer_vit_tiny").parameters())
    theirs = sum(p.numel() for p in timm.create_model("deit_tiny_patch16_224").parameters())
    assert ours == theirs
    assert round(ours / 1e6, 1) == 5.7


def test_fused_and_explicit_attention_agree():
    model = tiny("late", pool="cls").eval()
    x = torch.randn(3, 3, 48, 56)
    with torch.no_grad():
        fused = model(x)
        for m in model.modules():
            if isinstance(m, cf.layers.Attention):
                m.fused = False
        explicit = model(x)
    torch.testing.assert_close(fused, explicit, rtol=1e-4, atol=1e-5)


def test_positional_embedding_is_resampled_not_cropped():
    model = tiny("vit").eval()
    with torch.no_grad():
        small = model(torch.randn(1, 3, 48, 48))
        big = model(torch.randn(1, 3, 96, 80))  # 12 x 10 grid from a 6 x 6 table
    assert small.shape == big.shape == (1, 5)


@pytest.mark.parametrize("fusion, pool", [("vit", "cls"), ("early", "avg"), ("late", "avg")])
def test_sincos_positions_are_a_fixed_table(fusion, pool, tmp_path):
    model = tiny(fusion, pool=pool, pos_embed="sincos")
    tokens = model.branches[fusion if fusion != "late" else "vit"].tokens
    table = tokens.pos_embed
    assert "pos_embed" not in {n.split(".")[-1] for n, _ in model.named_parameters()}
    prefix = int(pool == "cls")
    assert table.shape == (1, prefix + 6 * 6, 24) and not table.requires_grad
    assert torch.equal(table[0, :prefix], torch.zeros(prefix, 24))
    grid = table[0, prefix:].reshape(6, 6, 24)  # sin(y f), sin(x f), cos(y f), cos(x f), six frequencies each
    assert torch.equal(grid[:, 0, :6], grid[:, 5, :6]) and not torch.equal(grid[0, :, :6], grid[5, :, :6])
    torch.testing.assert_close(grid[2, 3, [0, 6, 12, 18]], torch.tensor([2.0, 3.0, 2.0, 3.0]).sin().where(
        torch.tensor([True, True, False, False]), torch.tensor([2.0, 3.0, 2.0, 3.0]).cos()))
    model(torch.randn(2, 3, 48, 48)).sum().backward()
    assert all(p.grad is not None for p in model.parameters())
    assert model(torch.randn(1, 3, 96, 80)).shape == (1, 5)  # resampled like a learned table
    path = cf.save_checkpoint(model, tmp_path / "m.safetensors")
    again = cf.load_checkpoint(path)
    assert again.config.pos_embed == "sincos" and torch.equal(again.state_dict()[
        next(k for k in again.state_dict() if k.endswith("pos_embed"))], table)


def test_reset_classifier():
    model = tiny("mid")
    model.reset_classifier(7)
    assert model(torch.randn(2, 3, 48, 48)).shape == (2, 7)
    assert model.config.num_classes == 7


@pytest.mark.parametrize("field, value, words", [
    ("fusion", "hybrid", "fusion='hybrid'"),
    ("embed_dim", 100, "divisible by num_heads=8"),
    ("depth", -1, "depth=-1"),
    ("conv_depths", (1, 1), "conv_depths=(1, 1)"),
    ("img_size", 4, "img_size=(4, 4)"),
    ("pool", "cls", "pool='cls'"),  # with mid fusion
    ("drop_rate", 1.0, "drop_rate=1.0"),
    ("merge", "multiply", "merge='multiply'"),
    ("depth", 10**6, "depth=1000000"),
    ("embed_dim", 10**7, "embed_dim=10000000"),
    ("img_size", 10**5, "img_size=(100000, 100000)"),
    ("mean", (0.5, 0.5), "mean=(0.5, 0.5)"),
    ("pos_embed", "rope", "pos_embed='rope'"),
])
def test_bad_config_names_the_field(field, value, words):
    overrides = {"fusion": "mid", **({"num_heads": 8} if value == 100 else {}), field: value}
    with pytest.raises(ValueError, match=re.escape(words)):
        cf.ConvFormerConfig(**overrides)


def test_sincos_needs_a_width_divisible_by_four():
    with pytest.raises(ValueError, match=re.escape("embed_dim=18 is not allowed: must be divisible by 4")):
        cf.ConvFormerConfig(fusion="vit", embed_dim=18, num_heads=3, pos_embed="sincos")


def test_memory_hungry_combination_refused_before_building():
    with pytest.raises(ValueError, match="parameters"):
        cf.ConvFormerConfig(embed_dim=2048, depth=48, num_heads=8)
    with pytest.raises(ValueError, match="tokens"):
        cf.ConvFormerConfig(fusion="vit", img_size=1024, patch_size=4)


def test_unknown_override_is_refused():
    with pytest.raises(ValueError, match="unknown config field"):
        cf.build_model(fusion="mid", heads=3)
