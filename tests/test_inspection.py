"""One-pass inspection: what it records, that it counts attention's FLOPs, and that it leaves no trace."""
import pytest
import torch

import convformer as cf
from convformer.config import FUSIONS
from convformer.inspection import format_table
from tests.test_model import tiny


@pytest.mark.parametrize("fusion", FUSIONS)
def test_inspection_records_everything(fusion):
    model = tiny(fusion).eval()
    x = torch.randn(2, 3, 40, 56)
    result = cf.inspect(model, x, cam_class="pred")
    with torch.no_grad():
        torch.testing.assert_close(result.logits, model(x), rtol=1e-4, atol=1e-5)
    assert torch.allclose(result.probs.sum(-1), torch.ones(2))
    rows = result.shapes
    assert rows[0].output_shape == (2, 3, 40, 56) and rows[-1].output_shape == (2, 5)
    assert result.params == sum(p.numel() for p in model.parameters())
    assert all(r.flops >= 0 for r in rows) and result.flops > 0
    n_blocks = 0 if fusion == "cnn" else model.config.depth
    assert len(result.attentions) == n_blocks
    for name, attn in result.attentions.items():
        branch = name.split(".")[0]
        grid = result.token_grid[branch]
        n = grid.prefix + grid.h * grid.w
        assert attn.shape == (2, 2, n, n)
        torch.testing.assert_close(attn.sum(-1), torch.ones(2, 2, n))
    conv_stages = 0 if fusion == "vit" else len(model.config.conv_widths) + (fusion == "mid")
    assert len(result.activations) == conv_stages
    assert all(a.ndim == 4 and a.shape[0] == 2 for a in result.activations.values())
    if fusion == "vit":
        assert result.cam == {}
    else:
        (cam,) = result.cam.values()
        assert cam.shape[0] == 2 and cam.min() >= 0 and cam.max() <= 1
        assert torch.equal(result.cam_class, result.logits.argmax(-1))


def test_late_fusion_has_both_branches_and_a_merge_row():
    result = cf.inspect(tiny("late", pool="cls").eval(), torch.randn(1, 3, 48, 48))
    names = [r.name for r in result.shapes]
    assert any(n.startswith("cnn.conv") for n in names) and any(n.startswith("vit.blocks") for n in names)
    merge = result.shapes[names.index("merge")]
    assert merge.input_shape == ((1, 16), (1, 24)) and merge.output_shape == (1, 40)
    assert set(result.token_grid) == {"vit"} and result.token_grid["vit"].prefix == 1
    assert all(k.startswith("cnn.") for k in result.activations)


def test_fusion_boundaries_are_rows():
    rows = {r.name: r for r in cf.inspect(tiny("mid").eval(), torch.randn(1, 3, 48, 64)).shapes}
    assert rows["mid.tokens"].input_shape == (1, 24, 6, 8) and rows["mid.tokens"].output_shape == (1, 48, 24)
    assert rows["mid.grid"].input_shape == (1, 48, 24) and rows["mid.grid"].output_shape == (1, 24, 6, 8)


def test_flops_include_attention_matmuls():
    model = tiny("vit", pool="cls", depth=1).eval()
    result = cf.inspect(model, torch.randn(1, 3, 48, 48))
    block = next(r for r in result.shapes if r.name == "vit.blocks.0")
    n, c, hidden = 1 + 6 * 6, 24, 96
    linear = 2 * n * c * (3 * c + c + 2 * hidden)
    attention = 2 * 2 * n * n * c  # q @ k^T and attn @ v
    assert block.flops == linear + attention


def test_flop_count_is_cached_per_shape():
    model = tiny("early").eval()
    first = cf.inspect(model, torch.randn(1, 3, 48, 48))
    again = cf.inspect(model, torch.randn(1, 3, 48, 48))
    other = cf.inspect(model, torch.randn(1, 3, 64, 64))
    assert [r.flops for r in first.shapes] == [r.flops for r in again.shapes]
    assert other.flops > first.flops


def _hook_count(model):
    return sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in model.modules())


def test_model_left_exactly_as_it_was():
    model = tiny("late").train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    cf.inspect(model, torch.randn(2, 3, 48, 48), cam_class=1)
    assert _hook_count(model) == 0
    assert all(m.training for m in model.modules())
    assert all(m.fused for m in model.modules() if isinstance(m, cf.layers.Attention))
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())  # BN stats untouched
    assert all(p.grad is None for p in model.parameters())


def test_hooks_released_when_forward_raises():
    model = tiny("mid").eval()
    with pytest.raises(RuntimeError):
        cf.inspect(model, torch.randn(1, 4, 48, 48))  # wrong channel count
    assert _hook_count(model) == 0
    assert all(m.fused for m in model.modules() if isinstance(m, cf.layers.Attention))


def test_table_text_starts_at_input_and_totals():
    text = format_table(cf.inspect(tiny("cnn").eval(), torch.randn(1, 3, 48, 48)).shapes)
    lines = text.splitlines()
    assert lines[1].startswith("input") and "(B=1, C=3, H=48, W=48)" in lines[1]  # named axes
    assert lines[-2].startswith("head") and "(B=1, classes=5)" in lines[-2]
    assert lines[-1].startswith("total")


def test_grad_cam_at_chosen_conv_layers():
    """mid fusion: Grad-CAM before the transformer (the last conv stage) and after it (the refinement conv)."""
    from convformer.inspection import conv_layers
    model = tiny("mid").eval()
    x = torch.randn(1, 3, 48, 48)
    layers = conv_layers(model)
    assert layers[-1] == "mid.refine" and layers[-2].startswith("mid.conv.stage")
    both = cf.inspect(model, x, cam_class="pred", cam_layers=layers[-2:])
    assert list(both.cam) == layers[-2:] and all(0 <= float(c.min()) <= float(c.max()) <= 1 for c in both.cam.values())
    default = cf.inspect(model, x, cam_class="pred", cam_layers=["mid.refine"])
    torch.testing.assert_close(default.cam["mid.refine"], both.cam["mid.refine"])
    with pytest.raises(ValueError, match="not conv layers"):
        cf.inspect(model, x, cam_class="pred", cam_layers=["mid.blocks.0"])


def test_a_replaced_head_is_seen_by_the_next_inspection():
    """Inspection keeps what it walks the module tree for per model; a new head (timm's reset_classifier) must
    show in the next shape table, not the cached one."""
    import timm
    model = timm.create_model("convformer_mid_tiny", num_classes=10, img_size=32).eval()
    x = torch.randn(1, 3, 32, 32)
    before = {r.name: r.params for r in cf.inspect(model, x, flops=False).shapes}
    model.reset_classifier(3)
    after = {r.name: r.params for r in cf.inspect(model, x, flops=False).shapes}
    assert after["head"] == before["head"] // 10 * 3 and after["head"] != before["head"]
