"""The app's detect and segment views (convformer_app/tasks): the pure pictures and tables, the handlers'
one-line refusals, then /detect and /segment through gradio_client, then a browser that picks Detect, runs,
sees boxes drawn and clicks one. Tiny images and random or bundled task models keep it quick."""
from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
from PIL import Image

from convformer_app.tasks import draw, results
from convformer_app.tasks.results import DetectResult, SegmentResult

pytestmark = pytest.mark.app

NAMES = ["circle", "square", "triangle", "star", "hexagon", "heart", "cross", "arrow", "crescent", "diamond"]


def _image(w: int = 200, h: int = 100) -> Image.Image:
    return Image.fromarray(np.full((h, w, 3), 128, np.uint8))


def _detections(**extra) -> SimpleNamespace:
    return SimpleNamespace(boxes=np.array([[10, 10, 60, 50], [40, 20, 190, 95]], np.float32),
                           scores=np.array([0.9, 0.5]), labels=np.array([3, 7]), **extra)


# ---- pure pictures and tables ------------------------------------------------------------------------
def test_palette_gives_distinct_colours_per_class() -> None:
    assert len(set(draw.palette(10))) == 10
    assert len(set(draw.palette(20))) == 20


def test_boxes_are_drawn_where_they_are_in_the_original_image() -> None:
    r = DetectResult.of(_detections(), _image(), NAMES, 0.3)
    assert r.scale == pytest.approx(results.DISPLAY / 200)
    picture = np.asarray(results.boxes_picture(r)).astype(int)
    plain = np.asarray(r.display).astype(int)
    h = plain.shape[0]
    assert picture.shape[0] > h  # a legend strip under the image
    changed = np.abs(picture[:h] - plain).sum(-1) > 0
    x1, y1, x2, y2 = (np.array([10, 10, 60, 50]) * r.scale).round().astype(int)
    assert changed[y1 + 20:y2 - 2, x1].any() and changed[y2, x1 + 5:x2 - 5].all()  # the first box's edges
    assert not changed[y1 + 15:y2 - 15, x1 + 15:x1 + 30].any()  # inside it, the image is untouched


def test_the_detection_table_is_in_original_pixels() -> None:
    rows = results.detection_rows(DetectResult.of(_detections(), _image(), NAMES, 0.3))
    assert rows == [[0, "star", 0.9, 10.0, 10.0, 60.0, 50.0], [1, "arrow", 0.5, 40.0, 20.0, 190.0, 95.0]]


def test_a_click_picks_the_smallest_box_under_it() -> None:
    r = DetectResult.of(_detections(), _image(), NAMES, 0.3)
    assert results.clicked_box(r, (45 * r.scale, 30 * r.scale)) == 0  # inside both: the smaller
    assert results.clicked_box(r, (150 * r.scale, 80 * r.scale)) == 1
    assert results.clicked_box(r, (5 * r.scale, 90 * r.scale)) is None


def test_heatmap_and_query_pictures_follow_the_head() -> None:
    dense = DetectResult.of(_detections(heatmaps=np.random.rand(10, 8, 16)), _image(), NAMES, 0.3)
    assert results.heatmap_picture(dense, 3).size == dense.display.size
    assert results.query_picture(dense, 0) is None  # a dense head has no queries
    attention = np.zeros((2, 8, 16))
    attention[0, 2, 3] = 1
    sets = DetectResult.of(_detections(attention=attention), _image(), NAMES, 0.3)
    assert results.heatmap_picture(sets, 3) is None
    a, b = np.asarray(results.query_picture(sets, 0)), np.asarray(results.query_picture(sets, 1))
    assert a.shape == b.shape and not np.array_equal(a, b)


def test_no_detections_give_an_image_and_an_empty_table() -> None:
    empty = SimpleNamespace(boxes=np.zeros((0, 4)), scores=np.zeros(0), labels=np.zeros(0, np.int64))
    r = DetectResult.of(empty, _image(), NAMES, 0.3)
    assert results.detection_rows(r) == []
    assert results.boxes_picture(r).size == r.display.size  # no legend when nothing was found


def test_mask_overlay_tints_classes_and_leaves_background() -> None:
    mask = np.zeros((100, 200), np.uint8)
    mask[20:60, 30:90] = 4
    r = SegmentResult.of(SimpleNamespace(mask=mask), _image(), ["background", *NAMES])
    picture = np.asarray(results.mask_picture(r)).astype(int)
    plain = np.asarray(r.display).astype(int)
    s = r.display.width / 200
    assert (picture[int(40 * s), int(60 * s)] != plain[int(40 * s), int(60 * s)]).any()  # the star is tinted
    assert (picture[int(80 * s), int(150 * s)] == plain[int(80 * s), int(150 * s)]).all()  # background is not


def test_iou_per_class_against_the_truth() -> None:
    truth = np.zeros((10, 10), np.uint8)
    truth[0:5, 0:5] = 1  # circle: 25 px
    pred = truth.copy()
    pred[0:5, 5:10] = 1  # 25 more predicted: IoU 0.5
    r = SegmentResult.of(SimpleNamespace(mask=pred), _image(10, 10), ["background", *NAMES], truth)
    rows = {row[0]: row for row in results.iou_rows(r)}
    assert rows["circle"] == ["circle", 0.5, 50, 25]
    assert rows["background"][1] == pytest.approx(50 / 75, abs=1e-3)
    assert set(rows) == {"background", "circle"}  # classes in neither are not listed
    assert results.iou_rows(SegmentResult.of(SimpleNamespace(mask=pred), _image(10, 10), NAMES)) == []
