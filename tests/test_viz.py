"""Picture helpers: rollout against a hand computation, grids, overlays."""
import numpy as np
import pytest
import torch
from PIL import Image

from convformer.inspection import viz

# one head, a class token and two patches; block 1 then block 2
A1 = np.array([[[0.5, 0.5, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]]])
A2 = np.array([[[0.0, 0.0, 1.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]]])


def test_rollout_matches_hand_computation():
    # 0.5 A + 0.5 I:  A1 -> [[.75 .25 0] [0 1 0] [0 0 1]],  A2 -> [[.5 0 .5] [0 1 0] [0 0 1]]
    # A2' @ A1' row 0 = .5 * [.75 .25 0] + .5 * [0 0 1] = [.375 .125 .5]
    joint = viz.rollout([A1, A2])
    np.testing.assert_allclose(joint[0], [0.375, 0.125, 0.5])
    np.testing.assert_allclose(joint.sum(-1), 1.0, rtol=1e-6)
    np.testing.assert_allclose(viz.rollout_map([A1, A2], (1, 2), prefix=1), [[0.0, 1.0]])


def test_rollout_head_fusion_and_discard():
    heads = np.stack([A1[0], A2[0]])  # two heads in one block
    np.testing.assert_allclose(viz.fuse_heads(heads, "max"), np.maximum(A1[0], A2[0]))
    np.testing.assert_allclose(viz.fuse_heads(heads, "min"), np.minimum(A1[0], A2[0]))
    # discarding the weakest half of the patch weights zeroes row 0's 0.25 to patch 1 in mean fusion
    kept = viz.rollout([heads], "mean", discard_ratio=0.5)
    assert kept[0, 1] == 0.0 and kept[0, 0] > 0
    with pytest.raises(ValueError, match="head_fusion"):
        viz.fuse_heads(heads, "median")
    with pytest.raises(ValueError, match="discard_ratio"):
        viz.rollout([heads], discard_ratio=1.0)


def test_rollout_without_class_token_on_a_non_square_grid():
    attn = torch.softmax(torch.randn(2, 6, 6), -1)
    heat = viz.rollout_map([attn, attn], (2, 3), prefix=0)
    assert heat.shape == (2, 3) and heat.min() == 0.0 and heat.max() == 1.0


def test_tokens_to_grid_checks_the_count():
    np.testing.assert_array_equal(viz.tokens_to_grid(np.arange(7), (2, 3), prefix=1), [[1, 2, 3], [4, 5, 6]])
    with pytest.raises(ValueError, match="do not match"):
        viz.tokens_to_grid(np.arange(7), (2, 3), prefix=0)


def test_query_map_and_point_to_query():
    attn = np.zeros((2, 7, 7))
    attn[:, 1 + 4, 1 + 2] = 1.0  # patch 4 (row 1, col 1 of a 2 x 3 grid) attends to patch 2
    q = viz.point_to_query(50, 90, image_size=(120, 100), grid=(2, 3))
    assert q == 4
    expected = np.zeros((2, 3))
    expected[0, 2] = 1.0
    np.testing.assert_array_equal(viz.query_map(attn, q, (2, 3), prefix=1), expected)
    np.testing.assert_array_equal(viz.query_map(attn, q, (2, 3), prefix=1, head=1), expected)


def test_head_maps_per_head():
    attn = torch.softmax(torch.randn(3, 5, 5), -1)
    maps = viz.head_maps(attn, (2, 2), prefix=1)
    np.testing.assert_allclose(maps[1], attn[1, 0, 1:].reshape(2, 2).numpy())


def test_overlay_and_heatmap_are_images_of_the_right_size():
    image = Image.new("RGB", (90, 60), "white")
    out = viz.overlay(image, np.array([[0.0, 1.0], [0.5, 0.2]]), alpha=0.5, cmap="jet")
    assert out.size == (90, 60) and out.mode == "RGB"
    rgb = viz.heatmap(np.array([[0.0, 1.0]]), "gray")
    np.testing.assert_array_equal(rgb, [[[0, 0, 0], [255, 255, 255]]])


def test_channel_grid_shows_the_most_active_channels():
    act = torch.zeros(10, 4, 4)
    act[7] += 5
    act[3] += 2
    assert list(viz.top_channels(act, 2)) == [7, 3]
    grid = viz.channel_grid(act, k=4, cell=16)
    assert grid.size == (2 * 16 + 2, 2 * 16 + 2)
