"""Chefer et al. 2021 relevance: the rule reproduces the authors' code on a timm DeiT with the same weights, and
`inspect(..., relevance_class=)` gives a class-specific map on every model with attention, in one pass."""
import pytest
import timm
import torch
import torch.nn.functional as F

import convformer as cf
from convformer.inspection import relevance
from convformer.config import FUSIONS
from tests.test_model import tiny


# ---- the authors' code, ported as the reference --------------------------------------------------------
# hila-chefer/Transformer-MM-Explainability @ 58eaea85ac9c34aff052f368514b35d2e4c8dd3c,
# Transformer_MM_explainability_ViT.ipynb (avg_heads, apply_self_attention_rules, generate_relevance), on the
# attention of hila-chefer/Transformer-Explainability @ c3e578f76b954e8528afeaaee26de3f07e3fe559,
# baselines/ViT/ViT_new.py (Attention.forward saves the probabilities after attn_drop and hooks their
# gradient). Changes: .cuda() dropped; einops' rearrange written as the equivalent reshape / permute.
def avg_heads(cam, grad):  # rule 5 from paper
    cam = cam.reshape(-1, cam.shape[-2], cam.shape[-1])
    grad = grad.reshape(-1, grad.shape[-2], grad.shape[-1])
    cam = grad * cam
    cam = cam.clamp(min=0).mean(dim=0)
    return cam


def apply_self_attention_rules(R_ss, cam_ss):  # rule 6 from paper
    R_ss_addition = torch.matmul(cam_ss, R_ss)
    return R_ss_addition


def authors_attention_forward(self, x, attn_mask=None, **_):  # ViT_new.Attention.forward(x, register_hook=True)
    assert attn_mask is None  # timm passes its (unused) mask; the authors' Attention has none
    b, n, _, h = *x.shape, self.num_heads
    qkv = self.qkv(x)
    q, k, v = qkv.reshape(b, n, 3, h, -1).permute(2, 0, 3, 1, 4)  # 'b n (qkv h d) -> qkv b h n d'
    dots = torch.einsum('bhid,bhjd->bhij', q, k) * self.scale
    attn = dots.softmax(dim=-1)
    attn = self.attn_drop(attn)
    out = torch.einsum('bhij,bhjd->bhid', attn, v)
    self.attention_map = attn
    attn.register_hook(lambda g: setattr(self, "attn_gradients", g))
    out = out.permute(0, 2, 1, 3).reshape(b, n, -1)  # 'b h n d -> b n (h d)'
    return self.proj_drop(self.proj(out))


def generate_relevance(model, input, index=None):
    output = model(input)
    if index is None:
        index = output.argmax(-1).item()
    one_hot = torch.zeros((1, output.size()[-1]), dtype=torch.float32)
    one_hot[0, index] = 1
    one_hot = torch.sum(one_hot * output)
    model.zero_grad()
    one_hot.backward(retain_graph=True)
    num_tokens = model.blocks[0].attn.attention_map.shape[-1]
    R = torch.eye(num_tokens, num_tokens)
    for blk in model.blocks:
        grad = blk.attn.attn_gradients
        cam = blk.attn.attention_map
        cam = avg_heads(cam, grad)
        R += apply_self_attention_rules(R, cam)
    return R[0, 1:]


def tiny_deit(**kwargs):
    torch.manual_seed(0)
    return timm.create_model("deit_tiny_patch16_224", pretrained=False, depth=3, num_classes=7, **kwargs).eval()


@pytest.mark.parametrize("index", [None, 4])
def test_relevance_reproduces_the_authors_code_on_a_deit(index):
    model, x = tiny_deit(img_size=64), torch.randn(1, 3, 64, 64)
    ours = cf.inspect(model, x, relevance_class="pred" if index is None else index, flops=False)
    reference = tiny_deit(img_size=64)
    for block in reference.blocks:
        block.attn.forward = authors_attention_forward.__get__(block.attn)
    theirs = generate_relevance(reference, x, index).detach()
    theirs = (theirs - theirs.min()) / (theirs.max() - theirs.min())  # as their generate_visualization
    (ours_map,) = ours.relevance.values()
    assert ours_map.shape == (1, 4, 4)
    torch.testing.assert_close(ours_map[0].flatten(), theirs, atol=1e-5, rtol=0)
    assert int(ours.relevance_class) == (ours.logits.argmax().item() if index is None else index)


def test_timm_relevance_on_a_non_square_grid_is_class_specific_and_restores_the_model():
    model, x = tiny_deit(img_size=(64, 48)), torch.randn(2, 3, 64, 48)
    fused = [m.attn.fused_attn for m in model.blocks]
    a = cf.inspect(model, x, relevance_class=0, flops=False)
    b = cf.inspect(model, x, relevance_class=torch.tensor([5, 6]), flops=False)
    assert a.relevance["blocks"].shape == (2, 4, 3) and a.token_grid["blocks"].prefix == 1
    assert not torch.allclose(a.relevance["blocks"], b.relevance["blocks"])
    assert b.relevance_class.tolist() == [5, 6]
    assert [m.attn.fused_attn for m in model.blocks] == fused
    assert all(not att.requires_grad for att in a.attentions.values())
    assert all(p.grad is None for p in model.parameters())  # autograd.grad: no .grad left behind


@pytest.mark.parametrize("fusion", FUSIONS)
def test_every_model_with_attention_gets_a_map(fusion):
    model = tiny(fusion, pool="cls" if fusion in ("early", "vit") else "avg").eval()
    fused = [m.fused for m in model.modules() if isinstance(m, cf.layers.Attention)]
    x = torch.randn(2, 3, 40, 56)
    result = cf.inspect(model, x, cam_class="pred", relevance_class="pred", flops=False)
    with torch.no_grad():
        torch.testing.assert_close(result.logits, model(x), rtol=1e-4, atol=1e-5)
    assert [m.fused for m in model.modules() if isinstance(m, cf.layers.Attention)] == fused
    if fusion == "cnn":
        assert result.relevance == {} and result.relevance_class is None
        return
    (owner, maps), = result.relevance.items()
    grid = result.token_grid[owner]
    assert owner == ("vit" if fusion == "late" else fusion)
    assert maps.shape == (2, grid.h, grid.w) and (grid.h, grid.w) != (grid.w, grid.h)  # a non-square grid
    assert maps.amin() >= 0 and maps.amax() <= 1 and torch.allclose(maps.flatten(1).amax(1), torch.ones(2))
    assert torch.equal(result.relevance_class, result.logits.argmax(-1))
    assert all(not a.requires_grad for a in result.attentions.values())
    if fusion != "vit":
        assert result.cam  # Grad-CAM from the same pass still works beside it


def test_relevance_depends_on_the_class():
    model, x = tiny("early", pool="cls").eval(), torch.randn(1, 3, 48, 48)
    maps = [cf.inspect(model, x, relevance_class=c, flops=False).relevance["early"] for c in range(3)]
    assert not torch.allclose(maps[0], maps[1]) and not torch.allclose(maps[1], maps[2])


def test_chefer_rule_by_hand():
    a = torch.tensor([[[[0.5, 0.5], [0.2, 0.8]]]])  # (B=1, heads=1, N=2, N=2)
    g = torch.tensor([[[[1.0, -1.0], [2.0, 1.0]]]])
    r = relevance.chefer([a], [g])
    cam = torch.tensor([[0.5, 0.0], [0.4, 0.8]])
    torch.testing.assert_close(r[0], torch.eye(2) + cam)
    r2 = relevance.chefer([a, a], [g, torch.zeros_like(g)])  # a block whose gradient is zero adds nothing
    torch.testing.assert_close(r2, r)
    torch.testing.assert_close(relevance.token_relevance(r, prefix=1), r[:, 0])
    torch.testing.assert_close(relevance.token_relevance(r, prefix=0), r.mean(1))
    with pytest.raises(ValueError, match="one gradient per attention map"):
        relevance.chefer([a], [])


def test_maps_handle_prefix_tokens_and_non_square_grids():
    r = torch.zeros(1, 7, 7)
    r[0, 0, 1:] = torch.arange(6.0)
    out = relevance.relevance_maps(r, (2, 3), prefix=1)
    torch.testing.assert_close(out[0], torch.arange(6.0).reshape(2, 3) / 5)
    assert relevance.relevance_maps(torch.eye(7)[None], (2, 3), prefix=1).eq(0).all()  # constant: zeros
    with pytest.raises(ValueError, match="do not match a 3 x 3 grid"):
        relevance.relevance_maps(r, (3, 3), prefix=1)
