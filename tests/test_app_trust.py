"""The "Which map to trust?" panel's handlers (no browser): Shapes examples recognised by their pixels, the
scores, the verdict in both languages (escaped), late fusion's branches, the sanity check on demand."""
import numpy as np
import pytest
from PIL import Image

import gradio as gr
from convformer.inspection import faithfulness as fa
from convformer_app import i18n, trust
from convformer_app.weights import defaults

pytestmark = pytest.mark.app
EXAMPLES = trust.engine.EXAMPLES


def test_shapes_examples_are_recognised_by_their_pixels_only(tmp_path):
    for path in EXAMPLES.glob("shapes_*.png"):
        mask = trust.shapes_mask(Image.open(path).convert("RGB"))
        assert mask is not None and mask.shape == (96, 96) and 0.02 < (mask > 0.5).mean() < 0.6
    assert trust.shapes_mask(Image.open(EXAMPLES / "photo_chelsea_cat.jpg").convert("RGB")) is None
    changed = np.asarray(Image.open(EXAMPLES / "shapes_star.png").convert("RGB")).copy()
    changed[0, 0] ^= 1  # one pixel off: not the render any more
    assert trust.shapes_mask(Image.fromarray(changed)) is None


def test_score_on_a_shapes_example():
    d, i, table, verdict, branches = trust.score(str(EXAMPLES / "shapes_star.png"), *defaults("mid").inputs())
    assert set(d["value"]["method"]) == set(fa.METHODS) and set(i["value"]["method"]) == set(fa.METHODS)
    assert d["value"]["probability"].between(0, 1).all() and d["value"]["fraction"].max() == 1
    assert len(table["data"]) == len(fa.METHODS) and len(table["headers"]) == 5
    assert all(row[3] in (trust.text("trust.hit"), trust.text("trust.miss")) for row in table["data"])
    assert verdict.startswith("**Trust") and branches == ""


def test_score_on_a_photo_has_no_object_scores_and_late_fusion_names_its_branches():
    _, _, table, verdict, branches = trust.score(str(EXAMPLES / "photo_chelsea_cat.jpg"), *defaults("late").inputs())
    assert all(row[3] == "–" and row[4] == "–" for row in table["data"])
    assert verdict and "cnn" in branches and "vit" in branches and "%" in branches


def verdict_of(gains: dict[str, float], cls: str = "star", lang: str = "en") -> str:
    curves = {m: fa.Curves(np.array([0.0, 1.0]), np.zeros((1, 2)), np.full((1, 2), g)) for m, g in gains.items()}
    token = i18n.LANG.set(lang)
    try:
        return trust.verdict(trust.Trust(cls, curves, {}, {}, {}))
    finally:
        i18n.LANG.reset(token)


def test_verdict_in_both_languages_and_escaped():
    assert "Trust relevance" in verdict_of({"relevance": 0.6, "rollout": 0.3, "random": 0.1})
    assert "相信 relevance" in verdict_of({"relevance": 0.6, "random": 0.1}, lang="zh-CN")
    assert "Trust none" in verdict_of({"relevance": 0.12, "random": 0.1})
    assert "&lt;img" in verdict_of({"gradcam": 0.9, "random": 0.0}, cls="<img src=x onerror=alert(1)>")


def test_sanity_check_on_demand():
    out = trust.sanity(str(EXAMPLES / "shapes_star.png"), *defaults("early").inputs())
    rows = {row[0]: row for row in out["data"]}
    assert set(rows) == set(fa.METHODS)
    assert rows["random"][1] == "1.00" and rows["random"][2] == trust.text("trust.same")
    assert float(rows["relevance"][1]) < 0.5


def test_imagenet_weights_are_refused_in_one_line():
    with pytest.raises(gr.Error, match="ImageNet references"):
        trust.score(str(EXAMPLES / "shapes_star.png"), *defaults("mid", weights="imagenet").inputs())


def test_every_method_has_a_colour_named_in_the_legend():
    assert set(trust.COLOURS) == set(fa.METHODS)
    legend = trust.text("trust.legend", lang="en")
    assert all(m in legend for m in fa.METHODS)
