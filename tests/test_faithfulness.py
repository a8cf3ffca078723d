"""Faithfulness scores: deletion / insertion equal Quantus's pixel flipping on identical maps and images; the
pointing game, mask IoU, the cascading-randomisation sanity check, late fusion's branches and the command."""
import numpy as np
import pytest
import torch

import convformer as cf
from convformer.inspection import faithfulness as fa
from convformer.__main__ import main
from convformer.export.checkpoint import bundled_checkpoint
from tests.test_model import tiny


def tiny_mid():
    return tiny("mid", num_classes=5).eval()


# ---- deletion / insertion against Quantus (a test dependency) -----------------------------------------
@pytest.fixture(scope="module")
def case():
    torch.manual_seed(1)
    # one channel: Quantus counts features per channel, so a pixel is one feature (its steps must divide H * W)
    model, images = tiny("mid", num_classes=5, in_chans=1).eval(), torch.randn(3, 1, 24, 24)
    maps = {"a": torch.rand(3, 24, 24), "b": torch.rand(3, 24, 24)}  # one value per pixel, no ties
    target = torch.tensor([0, 3, 4])
    return model, images, maps, target, fa.perturbation_curves(model, images, maps, target, steps=8)


def quantus_curve(model, x, a, y, perturb_func=None):
    quantus = pytest.importorskip("quantus")
    kwargs = {"perturb_func": perturb_func} if perturb_func else {"perturb_baseline": 0.0}
    metric = quantus.PixelFlipping(features_in_step=72, normalise=False, abs=False, disable_warnings=True,
                                   display_progressbar=False, **kwargs)
    return np.asarray(metric(model=model, x_batch=x, y_batch=y, a_batch=a, channel_first=True, softmax=True,
                             device="cpu"))


def test_deletion_equals_quantus_pixel_flipping(case, method="a"):
    model, images, maps, target, curves = case
    theirs = quantus_curve(model, images.numpy(), maps[method][:, None].numpy(), target.numpy())
    ours = curves[method]
    assert theirs.shape == (3, 8) and ours.deletion.shape == (3, 9)
    np.testing.assert_allclose(ours.deletion[:, 1:], theirs, atol=1e-5, rtol=0)
    from scipy.integrate import trapezoid  # Quantus's calculate_auc calls np.trapz, gone in NumPy 2
    full = np.concatenate([ours.deletion[:, :1], theirs], 1)
    np.testing.assert_allclose(ours.deletion_auc, trapezoid(full, dx=1 / 8, axis=1), atol=1e-5, rtol=0)


def test_insertion_equals_quantus_pixel_flipping_from_the_baseline(case, method="b"):
    model, images, maps, target, curves = case
    flat = images.numpy().reshape(3, -1)

    def insert(arr, indices, **kwargs):  # Quantus perturbs the baseline image back towards the original
        out = arr.copy()
        np.put_along_axis(out, indices, np.take_along_axis(flat, indices, 1), 1)
        return out

    theirs = quantus_curve(model, np.zeros_like(images.numpy()), maps[method][:, None].numpy(), target.numpy(),
                           insert)
    np.testing.assert_allclose(curves[method].insertion[:, 1:], theirs, atol=1e-5, rtol=0)
    with torch.no_grad():  # the ends: the baseline's and the image's own probability
        p = lambda x: model(x).softmax(-1).gather(1, target[:, None])[:, 0].numpy()  # noqa: E731
        np.testing.assert_allclose(curves[method].insertion[:, 0], p(torch.zeros_like(images)), atol=1e-6)
        np.testing.assert_allclose(curves[method].deletion[:, 0], p(images), atol=1e-6)


def test_curves_shared_ends_and_bad_input(case):
    model, images, maps, target, curves = case
    np.testing.assert_allclose(curves["a"].fractions, np.linspace(0, 1, 9))
    np.testing.assert_array_equal(curves["a"].deletion[:, 0], curves["b"].deletion[:, 0])
    with pytest.raises(ValueError, match="baseline='grey'"):
        fa.perturbation_curves(model, images, maps, target, baseline="grey")
    with pytest.raises(ValueError, match="steps=0"):
        fa.perturbation_curves(model, images, maps, target, steps=0)
    with pytest.raises(ValueError, match="not map methods"):
        fa.method_maps(model, images, methods=("relevance", "lime"))


def test_blur_baseline_keeps_shape_and_smooths():
    x = torch.randn(2, 3, 32, 32)
    b = fa.baseline_of(x, "blur")
    assert b.shape == x.shape and b.std() < x.std()


# ---- the object ----------------------------------------------------------------------------------------
def test_pointing_game_and_mask_iou_by_hand():
    masks = torch.zeros(2, 8, 8)
    masks[:, 2:6, 2:6] = 1
    maps = torch.zeros(2, 4, 4)
    maps[0, 1:3, 1:3] = 1   # on the object, exactly its cells
    maps[1, 0, 3] = 1       # in a corner
    assert fa.pointing_game(maps, masks).tolist() == [True, False]
    iou = fa.mask_iou(maps, masks)
    assert iou[0] > 0.5 and iou[1] == 0


# ---- maps, the sanity check, evaluate ------------------------------------------------------------------
def test_method_maps_per_fusion_and_batched_rollout_matches_viz():
    model, x = tiny("early", pool="cls").eval(), torch.randn(2, 3, 40, 56)
    maps, result = fa.method_maps(model, x)
    grid = result.token_grid["early"]
    assert set(maps) == set(fa.METHODS)
    assert all(m.shape == (2, grid.h, grid.w) and 0 <= m.min() and m.max() <= 1 for k, m in maps.items()
               if k != "gradcam")
    from convformer.inspection import viz
    blocks = result.rollout_blocks()
    one = viz.rollout_map([result.attentions[b][1] for b in blocks], (grid.h, grid.w), grid.prefix)
    np.testing.assert_allclose(maps["rollout"][1].numpy(), one, atol=1e-4)  # min-max scaling of a flat map
    cnn_maps, _ = fa.method_maps(tiny("cnn").eval(), x)
    assert set(cnn_maps) == {"gradcam", "random"}


def test_sanity_check_cascade_leaves_the_model_alone():
    model, x = tiny_mid(), torch.randn(4, 3, 32, 32)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    groups = fa.cascade(model)
    assert groups[0][0] == "head" and len(groups) >= 4
    out = fa.sanity_check(model, x, torch.tensor([0, 1, 2, 3]), ("relevance", "gradcam", "random"))
    assert all(len(v) == len(groups) for v in out.values())
    np.testing.assert_allclose(out["random"], 1.0)  # a map that ignores the model never changes
    assert out["relevance"][-1] < 0.9 and out["gradcam"][-1] < 0.9
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_spearman_constant_map_is_zero():
    a, b = torch.rand(2, 3, 3), torch.zeros(2, 3, 3)
    np.testing.assert_array_equal(fa.spearman(a, b), [0.0, 0.0])
    np.testing.assert_allclose(fa.spearman(a, a), [1.0, 1.0])


def test_evaluate_scores_every_method():
    model = tiny_mid()
    x, masks = torch.randn(5, 3, 32, 32), (torch.rand(5, 32, 32) > 0.5).float()
    scores = fa.evaluate(model, x, masks, steps=4, sanity_images=2, chunk=3)
    assert set(scores) == set(fa.METHODS)
    for s in scores.values():
        assert 0 <= s.pointing <= 1 and 0 <= s.iou <= 1 and 0 <= s.deletion <= 1 and 0 <= s.insertion <= 1
        assert -1 <= s.sanity <= 1 and len(s.cascade) == len(fa.cascade(model))
    no_masks = fa.evaluate(model, x, steps=2, sanity_images=0, methods=("relevance",))
    assert np.isnan(no_masks["relevance"].pointing) and np.isnan(no_masks["relevance"].sanity)


def test_late_fusion_branch_contributions_add_up_to_the_logit():
    model, x = tiny("late", num_classes=5).eval(), torch.randn(3, 3, 32, 32)
    target = torch.tensor([1, 2, 3])
    parts = fa.branch_contributions(model, x, target)
    assert set(parts) == {"cnn", "vit"}
    with torch.no_grad():
        logit = model(x).gather(1, target[:, None])[:, 0] - model.head.bias[target]
    torch.testing.assert_close(parts["cnn"] + parts["vit"], logit, atol=1e-4, rtol=1e-4)
    with pytest.raises(ValueError, match="late-fusion"):
        fa.branch_contributions(tiny_mid(), x, target)


@pytest.mark.skipif(bundled_checkpoint("late") is None, reason="no bundled checkpoint")
def test_faithfulness_command(capsys, tmp_path):
    out = tmp_path / "scores.json"
    assert main(["faithfulness", "--fusion", "late", "--n", "3", "--steps", "2", "--sanity", "1",
                 "--json", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "| relevance |" in printed and "| gradcam |" in printed and "branches: cnn" in printed
    import json
    saved = json.loads(out.read_text())["late"]
    assert set(saved) == {*fa.METHODS, "branches"} and 0 <= saved["relevance"]["pointing"] <= 1
    assert main(["faithfulness", "--fusion", "mid", "--n", "0"]) == 2
    assert "--n and --steps" in capsys.readouterr().err


# ---- ROAD against pytorch-grad-cam (a test dependency) ------------------------------------------------
@pytest.mark.parametrize("most_relevant_first", [True, False])
def test_road_equals_pytorch_grad_cam(most_relevant_first):
    metrics = pytest.importorskip("pytorch_grad_cam.metrics.road")
    from pytorch_grad_cam.metrics.perturbation_confidence import RemoveLeastRelevantFirst, RemoveMostRelevantFirst
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputSoftmaxTarget
    torch.manual_seed(2)
    model, images, maps = tiny_mid(), torch.randn(2, 3, 20, 20), torch.rand(2, 20, 20)
    target = torch.tensor([1, 4])
    ours = fa.road(model, images, maps, target, (20, 70), most_relevant_first=most_relevant_first, noise=0.0)
    remove = RemoveMostRelevantFirst if most_relevant_first else RemoveLeastRelevantFirst
    targets = [ClassifierOutputSoftmaxTarget(int(t)) for t in target]
    for j, p in enumerate((20, 70)):  # their imputer, noise off (theirs draws from the global generator)
        metric = metrics.PerturbationConfidenceMetric(remove(p, metrics.NoisyLinearImputer(noise=0.0)))
        theirs = metric(images, maps.numpy(), targets, model)
        np.testing.assert_allclose(ours[:, j], theirs, atol=1e-5, rtol=0)


def test_imputation_fills_only_the_removed_pixels_smoothly():
    image = torch.linspace(0, 1, 64).reshape(1, 8, 8).expand(3, 8, 8).contiguous()
    keep = np.ones((8, 8), bool)
    keep[3:5, 3:5] = False
    out = fa.impute(image, keep)
    assert torch.equal(out[:, keep], image[:, keep])
    torch.testing.assert_close(out, image, atol=0.02, rtol=0)  # a linear ramp is filled back almost exactly
