"""Pictures that say what they are (issue 27): the per-block attention strips carry a caption per map and a colour
scale; a picture a model cannot have (attention in a pure CNN, conv maps in a pure ViT) says why in its title."""
from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from convformer.inspection import viz
from convformer_app import absent, views

pytestmark = pytest.mark.app


def test_strips_have_a_caption_per_map_and_a_colour_scale() -> None:
    maps = np.random.default_rng(0).random((4, 8, 8))
    picture = np.asarray(views.captioned_tile(maps, ["blocks.0", "blocks.1", "blocks.2", "mid.refine"], cell=64))
    plain = np.asarray(views.tile(maps, cell=64))
    assert picture.shape[0] > plain.shape[0] + 40  # caption rows above the maps, the scale under them
    caption = picture[:14, :64]  # above the first map: dark text on white
    assert (caption.sum(-1) < 200).any() and (caption == 255).all(-1).mean() > 0.5
    ramp = viz.colour_table("viridis")
    rows = [r for r in range(picture.shape[0]) if (np.abs(picture[r, 0].astype(int) - ramp[0]).sum() < 12
                                                   and np.abs(picture[r, 150].astype(int) - ramp[160]).sum() < 12)]
    assert rows, "no colour scale from the colormap's low end under the maps"


def _run(attentions: bool, conv: bool) -> SimpleNamespace:
    return SimpleNamespace(attentions={"b": 1} if attentions else {}, channels={"s": 1} if conv else {},
                           cam={"l": 1} if conv else {}, conv_layers=["l"] if conv else [])


@pytest.mark.parametrize("attentions, conv, said", [(False, True, [0, 1, 2, 3, 4]), (True, False, [5, 6]),
                                                    (True, True, [])], ids=["cnn", "vit", "hybrid"])
def test_a_picture_the_model_cannot_have_says_why_in_its_title(attentions, conv, said) -> None:
    titles = [u["label"] for u in absent.labels(_run(attentions, conv))]
    why = [i for i, t in enumerate(titles) if t.startswith("No ")]
    assert why == said, titles
    if 0 in said:
        assert "no attention" in titles[0]
    if 5 in said:
        assert "no convolutions" in titles[5] and "Grad-CAM" in titles[6]
