"""The timm model interface, checked as timm's own tests/test_models.py checks it (README, "timm"), plus what
timm's tests select by module name and so never run on these presets (forward_intermediates, pruning), and
DeiT-Ti's logits from DeiT's weights."""
import copy

import pytest
import timm
import torch
from safetensors.torch import save_file
from timm.models import get_notrace_functions, get_notrace_modules
from timm.models._features import FeatureGetterNet
from timm.models._manipulate import group_parameters

import convformer as cf
from convformer.export.checkpoint import bundled_checkpoint
from convformer.config import FUSIONS
from convformer.presets import checkpoint_filter_fn
from tests.test_model import TINY, tiny

X = torch.randn(2, 3, 40, 56)


def _grid(size, stride):
    return tuple(-(-s // stride) for s in size)


@pytest.mark.parametrize("fusion, pool", [(f, p) for f in FUSIONS for p in ("avg", "cls")
                                          if p == "avg" or f != "mid"])  # mid refuses a class token
def test_unpooled_features_and_head(fusion, pool):
    model = tiny(fusion, pool=pool).eval()
    with torch.no_grad():
        feats = model.forward_features(X)
        pre = model.forward_head(feats, pre_logits=True)
        logits = model(X)
    torch.testing.assert_close(model.forward_head(feats), logits)
    assert pre.shape == (2, model.head_hidden_size) and logits.shape == (2, 5)
    maps = feats if fusion == "late" else [feats]
    assert all(m.ndim == 4 for m in maps)
    h, w = _grid(X.shape[-2:], 8)  # conv stride and patch are both 8 in TINY
    token_row = pool == "cls" and fusion in ("early", "vit", "late")
    assert maps[-1].shape[-2:] == ((1, 1 + h * w) if token_row else (h, w))
    if fusion == "late":
        assert [m.shape[1] for m in maps] == [16, 24] and model.num_features == 40
        vit = maps[1].flatten(2)
        vit = vit[:, :, 0] if pool == "cls" else vit.mean(2)
        torch.testing.assert_close(pre, torch.cat([maps[0].mean((2, 3)), vit], 1))  # the cnn grid: its mean
    elif fusion == "cnn":
        torch.testing.assert_close(pre, feats.mean((2, 3)))
    else:
        assert feats.shape[1] == model.num_features == model.head_hidden_size


@pytest.mark.parametrize("fusion", ["mid", "vit", "late"])
def test_no_classifier_at_creation_and_reset(fusion):
    model = tiny(fusion, num_classes=0).eval()
    with torch.no_grad():
        pooled = model(X)
        assert pooled.shape == (2, model.head_hidden_size)
        model.reset_classifier(3)
        assert model(X).shape == (2, 3) and model.config.num_classes == 3
        model.reset_classifier(0)
        torch.testing.assert_close(model(X), pooled)
        if fusion == "late":
            with pytest.raises(ValueError, match="global_pool=''"):
                model.reset_classifier(0, "")
        else:
            model.reset_classifier(0, "")
            assert model(X).ndim == 4
            model.reset_classifier(4)  # a classifier needs pooling: the config's comes back
            assert model(X).shape == (2, 4)
    with pytest.raises(ValueError, match="global_pool='' .*num_classes=0"):
        cf.build_model(fusion="mid", **{**TINY, "num_classes": 5}, global_pool="")
    with pytest.raises(ValueError, match="'cls' needs pool='cls'"):
        tiny("mid").reset_classifier(2, "cls")


def test_reset_classifier_keeps_device_dtype_and_mode():
    model = tiny("mid").to(torch.float64).eval()
    model.reset_classifier(2)
    assert model.head.weight.dtype == torch.float64 and not model.head.training


@pytest.mark.parametrize("fusion", FUSIONS)
def test_forward_intermediates_match_feature_info(fusion):
    model = tiny(fusion, pool="cls" if fusion in ("early", "vit", "late") else "avg").eval()
    info = timm.models.FeatureInfo(model.feature_info, len(model.feature_info))
    with torch.no_grad():
        final, maps = model.forward_intermediates(X)
        features = model.forward_features(X)
        last_two = model.forward_intermediates(X, indices=2, intermediates_only=True)
        early = model.forward_intermediates(X, indices=[0], stop_early=True, intermediates_only=True)
        nhwc = model.forward_intermediates(X, indices=[-1], output_fmt="NHWC", intermediates_only=True)
    torch.testing.assert_close(final, features, rtol=0, atol=0)
    assert len(maps) == len(info.channels())
    for m, c, r in zip(maps, info.channels(), info.reduction()):
        assert m.shape[:2] == (2, c) and m.shape[-2:] == _grid(X.shape[-2:], r)
    torch.testing.assert_close(last_two, maps[-2:], rtol=0, atol=0)
    torch.testing.assert_close(early[0], maps[0], rtol=0, atol=0)
    torch.testing.assert_close(nhwc[0], maps[-1].permute(0, 2, 3, 1))
    n_conv = 0 if fusion == "vit" else 3
    n_blocks = 0 if fusion == "cnn" else 2
    assert len(maps) == n_conv + n_blocks + (fusion == "mid")


@pytest.mark.parametrize("fusion", FUSIONS)
def test_pruned_taps_equal_unpruned_and_every_param_is_used(fusion):
    model = tiny(fusion).eval()
    with torch.no_grad():
        taps = model.forward_intermediates(X, intermediates_only=True)
    for i in range(len(taps)):
        pruned = copy.deepcopy(model)
        take = pruned.prune_intermediate_layers([i], prune_norm=True)  # as FeatureGetterNet without norm
        with torch.no_grad():
            torch.testing.assert_close(pruned.forward_intermediates(X, indices=take, intermediates_only=True)[0],
                                       taps[i], rtol=0, atol=0)
            if fusion != "late" and i < len(taps) - 1:  # without norm and head, the features end at the tap
                torch.testing.assert_close(pruned.forward_features(X), taps[i], rtol=0, atol=0)
        pruned.train()  # as timm's contract: the taps and forward_features use every parameter left
        feats = pruned.forward_features(X)
        selected = pruned.forward_intermediates(X, indices=take, intermediates_only=True)
        sum(f.sum() for f in selected + (feats if isinstance(feats, list) else [feats])).backward()
        assert not [n for n, p in pruned.named_parameters() if p.grad is None], f"unused params pruned to {i}"
    if fusion != "cnn":  # with the final norm kept, block taps are normed (FeatureGetterNet with norm=True)
        pruned = copy.deepcopy(model)
        pruned.prune_intermediate_layers([-1])
        with torch.no_grad():
            normed = pruned.forward_intermediates(X, indices=[-1], norm=True, intermediates_only=True)[0]
        assert not torch.equal(normed, taps[-1]) or fusion == "mid"  # mid's last tap is the refined grid


@pytest.mark.parametrize("name", ["convformer_early_tiny", "convformer_mid_tiny", "convformer_late_tiny",
                                  "convformer_cnn_tiny", "convformer_vit_tiny"])
def test_features_only_gives_every_conv_stage_and_the_token_grid(name):
    small = dict(img_size=64, embed_dim=32, depth=2, num_heads=2)
    model = timm.create_model(name, features_only=True, **({} if "cnn" in name else small)).eval()
    with torch.no_grad():
        maps = model(torch.randn(1, 3, 64, 96))
    kinds = [m.split(".")[2] for m in model.feature_info.module_name()]
    assert [m.shape[1] for m in maps] == model.feature_info.channels()
    assert [m.shape[-2:] for m in maps] == [_grid((64, 96), r) for r in model.feature_info.reduction()]
    n_conv = len(timm.create_model(name).config.conv_widths) if "vit" not in name else 0
    assert kinds.count("conv") == n_conv
    assert kinds.count("blocks") == (0 if "cnn" in name else 2 if "vit" in name else 1)


@pytest.mark.parametrize("fusion", FUSIONS)
def test_torchscript_and_fx_give_the_same_logits(fusion):
    from torchvision.models.feature_extraction import create_feature_extractor, get_graph_node_names
    model = tiny(fusion, pool="cls" if fusion != "mid" and fusion != "cnn" else "avg").eval()
    with torch.no_grad():
        expected = model(X)
        torch.testing.assert_close(torch.jit.script(model)(X), expected)
        tracer = dict(leaf_modules=get_notrace_modules(), autowrap_functions=get_notrace_functions())
        last = get_graph_node_names(model, tracer_kwargs=tracer)[1][-1]
        traced = create_feature_extractor(model, return_nodes=[last], tracer_kwargs=tracer)
        torch.testing.assert_close(traced(X)[last], expected)


def test_grad_checkpointing_gives_the_same_output_and_gradients():
    model = tiny("mid").train()
    torch.manual_seed(1)
    x = torch.randn(2, 3, 48, 48)
    model(x).sum().backward()
    grads = [p.grad.clone() for p in model.parameters()]
    model.zero_grad()
    model.set_grad_checkpointing()
    model(x).sum().backward()
    for g, p in zip(grads, model.parameters()):
        torch.testing.assert_close(p.grad, g)


def test_weight_decay_and_groups_name_real_parameters():
    model = tiny("late", pool="cls")
    names = dict(model.named_parameters())
    assert model.no_weight_decay() == {"branches.vit.tokens.pos_embed", "branches.vit.tokens.cls_token"}
    assert model.no_weight_decay() <= set(names)
    groups = group_parameters(model, model.group_matcher(), reverse=True)
    assert set(groups) == set(names)
    assert groups["branches.cnn.conv.stage0.0.conv.weight"] < groups["branches.cnn.conv.stage2.0.conv.weight"]
    assert groups["branches.vit.blocks.1.attn.qkv.weight"] > groups["branches.vit.patch.proj.weight"]
    assert groups["head.weight"] == max(groups.values())


@pytest.mark.parametrize("name", ["convformer_mid_tiny", "convformer_late_tiny", "convformer_vit_tiny"])
def test_pretrained_cfg_has_timm_standard_keys(name):
    model = timm.create_model(name, device="meta")
    cfg = model.pretrained_cfg
    assert cfg is model.default_cfg
    for key in ("input_size", "min_input_size", "interpolation", "crop_pct", "crop_mode", "mean", "std",
                "num_classes", "first_conv", "classifier", "architecture", "license"):
        assert key in cfg, key
    state = model.state_dict()
    first = (cfg["first_conv"],) if isinstance(cfg["first_conv"], str) else cfg["first_conv"]
    assert all(f + ".weight" in state for f in first) and cfg["classifier"] + ".weight" in state
    assert all(t.device.type == "meta" for t in state.values())
    if "late" in name:
        assert len(first) == 2 and "pool_size" not in cfg  # one map per branch
    else:
        assert tuple(model.forward_features(torch.zeros(1, 3, 224, 224, device="meta")).shape[-2:]) == \
            cfg["pool_size"]
    assert timm.create_model(name, img_size=96).pretrained_cfg["input_size"] == (3, 96, 96)


def test_unknown_keywords_raise_instead_of_being_dropped():
    with pytest.raises(TypeError, match="not_a_model_arg"):
        timm.create_model("convformer_mid_tiny", not_a_model_arg=1)
    with pytest.raises(ValueError, match="heads"):
        cf.create("convformer_mid_tiny", heads=3)
    assert isinstance(cf.create("convformer_cnn_tiny", features_only=True), FeatureGetterNet)


@pytest.mark.parametrize("fusion", FUSIONS)
def test_bundled_checkpoints_are_pretrained_tags(fusion):
    name = f"convformer_{fusion}_shapes"
    assert bundled_checkpoint(fusion) is not None, f"convformer/weights/{fusion}.safetensors is missing"
    assert f"{name}.bundled" in timm.list_models(pretrained=True)
    ours = cf.load_checkpoint(bundled_checkpoint(fusion))
    model = timm.create_model(name, pretrained=True).eval()
    assert model.pretrained_cfg["label_names"] == tuple(ours.meta["classes"]) and model.meta == ours.meta
    torch.testing.assert_close(model.state_dict(), ours.state_dict(), rtol=0, atol=0)
    gray = timm.create_model(f"{name}.bundled", pretrained=True, in_chans=1, num_classes=5)
    first = model.pretrained_cfg["first_conv"]
    for conv in (first,) if isinstance(first, str) else first:  # timm's adapt_input_conv: RGB summed
        key = conv + ".weight"
        torch.testing.assert_close(gray.state_dict()[key], ours.state_dict()[key].sum(1, keepdim=True))
    assert gray(torch.randn(1, 1, 64, 64)).shape == (1, 5)


def test_pretrained_cfg_overlay_loads_a_safetensors_file(tmp_path):
    source = tiny("mid", num_classes=10)
    path = tmp_path / "weights.safetensors"
    save_file({k: v.contiguous() for k, v in source.state_dict().items()}, str(path))
    overlay = dict(file=str(path), num_classes=10)  # the file's classifier width, so timm keeps its head
    model = timm.create_model("convformer_mid_tiny", pretrained=True, pretrained_cfg_overlay=overlay,
                              **{k: v for k, v in TINY.items() if k != "num_classes"}, num_classes=10)
    torch.testing.assert_close(model.state_dict(), source.state_dict(), rtol=0, atol=0)
    other = timm.create_model("convformer_mid_tiny", pretrained=True, pretrained_cfg_overlay=overlay, in_chans=1,
                              **{k: v for k, v in TINY.items() if k != "num_classes"}, num_classes=3)
    assert other.head.weight.shape == (3, 24)  # a new head; every other weight loaded, the first conv adapted
    key = "branches.mid.proj.weight"
    torch.testing.assert_close(other.state_dict()[key], source.state_dict()[key])


def test_deit_tiny_weights_give_deit_tiny_logits(tmp_path):
    torch.manual_seed(0)
    deit = timm.create_model("deit_tiny_patch16_224", pretrained=False).eval()
    with torch.no_grad():  # weights at a trained model's scale, so a wrong LayerNorm epsilon shows (~1e-3)
        for n, p in deit.named_parameters():
            scale, mean = (0.3, 1.0 if n.endswith("weight") else 0.0) if "norm" in n else (0.08, 0.0)
            p.copy_(torch.randn_like(p) * scale + mean)
    path = tmp_path / "deit_tiny.safetensors"
    save_file({k: v.contiguous() for k, v in deit.state_dict().items()}, str(path))
    ours = cf.create("convformer_vit_tiny", pretrained=True, pretrained_cfg_overlay=dict(file=str(path))).eval()
    assert ours.state_dict().keys() == checkpoint_filter_fn(deit.state_dict(), ours).keys()
    x = torch.randn(2, 3, 224, 224)
    with torch.no_grad():
        expected = deit(x)
        assert (ours(x) - expected).abs().max() <= 1e-5
        torch.testing.assert_close(ours.forward_head(ours.forward_features(x), pre_logits=True),
                                   deit.forward_head(deit.forward_features(x), pre_logits=True), rtol=0, atol=1e-5)
        assert expected.abs().max() > 1  # a real test: logits far from zero


@pytest.mark.parametrize("feature_cls", ["getter", "hook", "fx"])
def test_feature_cfg_and_build_keywords_pass_through(feature_cls) -> None:
    """timm's factory keywords reach build_model_with_cfg: a caller's feature_cfg (here the feature class) and
    pretrained_filter_fn win over the presets' own defaults instead of colliding with them."""
    model = timm.create_model("convformer_mid_shapes", features_only=True, feature_cfg=dict(feature_cls=feature_cls))
    outs = model(torch.zeros(1, 3, 64, 64))
    assert type(model).__name__ == {"getter": "FeatureGetterNet", "hook": "FeatureHookNet",
                                    "fx": "FeatureGraphNet"}[feature_cls]
    assert [o.shape[0] for o in outs] == [1] * len(model.feature_info.channels())
    seen = []
    timm.create_model("convformer_mid_shapes", pretrained=True,
                      pretrained_filter_fn=lambda state, m: seen.append(len(state)) or state)
    assert seen and seen[0] > 0
