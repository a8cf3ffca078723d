"""The app's detect and segment views (convformer_app/tasks): the pure pictures and tables, the handlers'
one-line refusals, then /detect and /segment through gradio_client, then a browser that picks Detect, runs,
sees boxes drawn and clicks one. Tiny images and random or bundled task models keep it quick."""
from __future__ import annotations

import re
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


def test_captions_of_overlapping_boxes_do_not_cover_each_other() -> None:
    from convformer_app.tasks import draw
    image = Image.new("RGB", (200, 200), (255, 255, 255))
    boxes = np.array([[50, 60, 150, 160], [52, 62, 148, 150]], np.float32)  # nearly the same box
    colours = [(255, 0, 0), (0, 0, 255)]
    shown = np.asarray(draw.draw_boxes(image, boxes, [0, 1], ["heart 0.46", "square 0.37"], colours))
    red = (shown[..., 0] > 200) & (shown[..., 1] < 60) & (shown[..., 2] < 60)
    blue = (shown[..., 2] > 200) & (shown[..., 0] < 60) & (shown[..., 1] < 60)
    top = slice(0, 100)  # the captions' rows (the boxes' bottom edges are lower)
    rows_red, rows_blue = np.flatnonzero(red[top].sum(1) > 30), np.flatnonzero(blue[top].sum(1) > 30)
    assert len(rows_red) >= 8 and len(rows_blue) >= 8  # both captions' fills are seen, in rows of their own
    assert rows_red.max() < rows_blue.min() or rows_blue.max() < rows_red.min()


def test_the_detection_table_is_in_original_pixels() -> None:
    rows = results.detection_rows(DetectResult.of(_detections(), _image(), NAMES, 0.3))
    assert rows == [[0, "star", 0.9, 10.0, 10.0, 60.0, 50.0, ""], [1, "arrow", 0.5, 40.0, 20.0, 190.0, 95.0, ""]]
    folded = DetectResult.of(_detections(second=np.array([[1, 0.45], [-1, 0]])), _image(), NAMES, 0.3)
    assert [row[-1] for row in results.detection_rows(folded, str.upper)] == ["SQUARE 0.45", ""]


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


def test_threshold_out_of_range_is_refused_in_one_line() -> None:
    import gradio as gr
    from convformer_app.tasks.handlers import threshold_of
    assert threshold_of("0.25") == 0.25 and threshold_of(None) == 0.3
    for bad in (-0.1, 1.01, float("nan"), "most"):
        with pytest.raises(gr.Error, match=r"threshold=.* is not allowed: expected a number from 0 to 1"):
            threshold_of(bad)


def test_grad_cam_targets_a_box_at_its_centre_cell_or_its_query() -> None:
    import torch
    from convformer_app.tasks.inspect import PREDICTED, target_score
    heat = torch.zeros(1, 10, 4, 8)
    heat[0, 3, 1, 6] = 5.0   # a star centred at row 1, column 6
    heat[0, 7, 3, 0] = 9.0   # the strongest: an arrow
    dense = SimpleNamespace(task="detect", head_kind="dense", class_names=NAMES)
    box = np.array([[1.5 / 4, 6.5 / 8, 3, 0]])  # (cy, cx as fractions, class, query)
    assert target_score(dense, {"heatmap": heat}, "box 0", box) == (5.0, "star")
    assert target_score(dense, {"heatmap": heat}, PREDICTED) == (9.0, "arrow")
    logits = torch.zeros(1, 5, 11)
    logits[0, 2, 4], logits[0, 4, 1] = 3.0, 6.0
    sets = SimpleNamespace(task="detect", head_kind="set", class_names=NAMES)
    assert target_score(sets, {"pred_logits": logits}, "box 0", np.array([[0, 0, 4, 2]])) == (3.0, "hexagon")
    assert target_score(sets, {"pred_logits": logits}, "square") == (6.0, "square")


def test_the_capture_hook_is_released_even_on_failure() -> None:
    import torch
    from convformer_app.tasks.inspect import captured
    layer = torch.nn.Identity()
    with pytest.raises(RuntimeError), captured(layer) as kept:
        layer(torch.ones(1))
        assert "out" in kept
        raise RuntimeError("boom")
    assert not layer._forward_hooks


def test_a_task_run_takes_one_of_the_servers_training_slots(monkeypatch, tmp_path) -> None:
    """Task runs share the Train and Study tabs' budget: none starts while the server runs its limit."""
    import gradio as gr
    from convformer_app.tasks.train import train_task
    from convformer_app.train import jobs
    monkeypatch.setenv("CONVFORMER_MAX_TRAIN_JOBS", "1")
    monkeypatch.setattr(jobs, "JOBS", {"another-page": jobs.Job(tmp_path)})  # a running classification run
    with pytest.raises(gr.Error, match="going on this server already"):
        next(train_task("detect", "mid", request=SimpleNamespace(session_hash="this-page")))
    assert list(jobs.JOBS) == ["another-page"]  # nothing claimed, no folder made


def test_the_training_curve_is_the_metric_against_time() -> None:
    from convformer_app.tasks.train import curve
    frame = curve([{"time": 3.0, "val_metric": 0.2}, {"time": 7.5, "val_metric": 0.6}], "map_50")
    assert frame.values.tolist() == [[3.0, 0.2, "map_50"], [7.5, 0.6, "map_50"]]
    empty = curve([], "map_50")  # before the first epoch: still numbers, so the chart's axes are numeric
    assert empty.empty and empty["seconds"].dtype.kind == "f" and empty["metric"].dtype.kind == "f"
    from convformer_app.tasks.train import chart
    assert chart([], "map_50") is None  # nothing to draw: no plot of an empty frame (an axis of infinite extent)


# ---- through the running app: /detect and /segment ----------------------------------------------------
SCENE = "scene-test-3-0-96.png"  # the file name the app recognises as Shapes scene 3 (test split, seed 0, 96 px)


@pytest.fixture(scope="module")
def client(server):
    from gradio_client import Client
    return Client(server.url, verbose=False)


@pytest.fixture(scope="module")
def scene(tmp_path_factory):
    from convformer.tasks import render_scene
    path = tmp_path_factory.mktemp("scene") / SCENE
    render_scene(3, "test", 0, 96).image.save(path)
    return path


def _detect(client, image, **kwargs) -> dict:
    from gradio_client import handle_file
    args = {**dict(fusion="mid", weights="random", threshold=0.0, head="set"), **kwargs}
    out = client.predict(handle_file(str(image)), **args, api_name="/detect")
    return dict(zip(("boxes", "table", "summary", "heat_class", "heatmap", "query", "query_note"), out))


def _error(call) -> str:
    from gradio_client.exceptions import AppError
    with pytest.raises(AppError) as info:
        call()
    message = str(info.value)
    assert "Traceback" not in message and "/tmp/" not in message
    return message


def test_detect_round_trip_gives_boxes_in_the_image_pixels(client, scene) -> None:
    out = _detect(client, scene)
    rows = out["table"]["data"]
    assert out["table"]["headers"][:3] == ["#", "class", "score"]
    assert 1 <= len(rows) <= 12  # at threshold 0, every query of the set head is a box
    boxes = np.array([row[3:7] for row in rows], dtype=float)
    assert (boxes >= 0).all() and (boxes[:, [0, 2]] <= 96).all() and (boxes[:, [1, 3]] <= 96).all()
    assert f"{len(rows)}" in out["summary"] and "random weights" in out["summary"]
    drawn = Image.open(out["boxes"])
    assert drawn.width == results.DISPLAY  # the boxes picture, a legend under it
    assert out["query"] is not None and "cross-attention" in out["query_note"]


def test_the_bundled_detectors_line_names_its_test_score(client, scene) -> None:
    out = _detect(client, scene, weights="bundled", head="dense", threshold=0.3)
    assert re.search(r"test mAP@0\.5 0\.\d{3}", out["summary"]) and "test_map_50" not in out["summary"]


def test_detect_says_when_nothing_is_found(client, scene) -> None:
    out = _detect(client, scene, threshold=0.9, head="dense")  # an untrained dense head scores ~0.1 everywhere
    assert out["table"]["data"] == []
    assert "No objects found at score ≥ 0.9" in out["summary"]


def test_segment_round_trip_scores_a_shapes_scene(client, scene) -> None:
    from gradio_client import handle_file
    mask, iou, summary = client.predict(handle_file(str(scene)), fusion="mid", weights="random",
                                        api_name="/segment")
    assert Image.open(mask).width == results.DISPLAY
    classes = [row[0] for row in iou["data"]]
    assert "background" in classes and len(classes) >= 2  # the scene's true classes are listed
    assert "Mean IoU against the scene's true mask" in summary


def test_segment_of_a_photo_has_no_score(client, tmp_path) -> None:
    from gradio_client import handle_file
    photo = tmp_path / "scene-test-3-0-96.png"  # the right name, other pixels: not the scene
    _image(96, 96).save(photo)
    _, iou, summary = client.predict(handle_file(str(photo)), fusion="cnn", weights="random", api_name="/segment")
    assert iou["data"] == [] and "Not a Shapes scene" in summary


def test_bad_input_gets_one_line(client, scene, tmp_path) -> None:
    from gradio_client import handle_file
    assert _error(lambda: _detect(client, scene, threshold=1.5)) == "Value 1.5 is greater than maximum value 1."
    from convformer.export.checkpoint import bundled_checkpoint
    classifier = bundled_checkpoint("mid")
    message = _error(lambda: client.predict(handle_file(str(scene)), fusion="mid", weights="upload",
                                            checkpoint=handle_file(str(classifier)), api_name="/segment"))
    assert "classification checkpoint" in message
    from convformer.tasks import create_task_model, save_task_checkpoint
    detector = save_task_checkpoint(create_task_model("detect", "cnn", weights="random"), tmp_path / "det.safetensors")
    message = _error(lambda: client.predict(handle_file(str(scene)), fusion="cnn", weights="upload",
                                            checkpoint=handle_file(str(detector)), api_name="/segment"))
    assert message == "this is a detect checkpoint; the segment task needs a segment checkpoint"


# ---- in a browser: pick Detect, run, see boxes, click one ---------------------------------------------
def test_browser_detect_draws_boxes_and_a_click_picks_one(browser, server, scene) -> None:
    page = browser.new_page(viewport={"width": 1280, "height": 1000})
    page.set_default_timeout(120_000)
    try:
        page.goto(f"{server.url}/?weights=random")
        page.wait_for_selector("#run")
        page.locator("#task").get_by_label("detect").check()
        page.wait_for_selector("#detect-run", state="visible")
        assert page.locator("#run").is_hidden() and page.locator("#label").is_hidden()
        page.locator("#preview button[aria-label='Remove Image']").click()  # the page starts with an example
        page.locator("#preview input[type=file]").set_input_files(str(scene))  # the picture is the drop zone
        page.wait_for_selector("#preview img")
        page.locator("#detect-head").get_by_label("set").check()  # queries: each box has its cross-attention
        page.locator("#threshold input[type=range]").press("Home")  # threshold 0: every query's box
        page.locator("#detect-run").click()
        page.wait_for_function("document.querySelector('#detect-summary').innerText.trim()"
                               ".endsWith('found at score ≥ 0.')")  # the threshold: 0
        page.wait_for_function("+document.querySelector('#detect-table [role=grid]').getAttribute('aria-rowcount') > 1")
        # the data rows: the virtual table's row divs (its one <tbody> row only sizes the columns, widest values)
        rows = [r for r in page.evaluate("[...document.querySelectorAll('#detect-table .virtual-row')].map("
                                         "row => [...row.querySelectorAll('[role=gridcell]')].map(c => c.textContent.trim()))")
                if len(r) == 8 and all(r[:7])]
        assert rows[0][0] == "0"  # the strongest box
        first = [float(v) for v in rows[0][3:7]]
        img = page.locator("#detect-boxes img")
        img.wait_for()  # the picture of this run, loaded, before it is measured and clicked
        page.wait_for_function("document.querySelector('#detect-boxes img')?.complete "
                               "&& document.querySelector('#detect-boxes img').naturalWidth > 0")
        nw, nh, cw, ch = page.evaluate("(el) => [el.naturalWidth, el.naturalHeight, el.clientWidth, el.clientHeight]",
                                       img.element_handle())
        fit = min(cw / nw, ch / nh)  # the picture is contained in its box, centred
        s = results.DISPLAY / 96 * fit  # original px -> on-screen px
        before = img.get_attribute("src")
        img.click(position={"x": (cw - nw * fit) / 2 + (first[0] + first[2]) / 2 * s,
                            "y": (ch - nh * fit) / 2 + (first[1] + first[3]) / 2 * s})
        page.wait_for_function("(src) => document.querySelector('#detect-boxes img')?.src !== src", arg=before)
        assert "Detection" in page.locator("#query-note").inner_text()
        page.wait_for_function("document.querySelector('#stats').innerText.includes('FLOPs')")  # the views, filled
        page.get_by_role("tab", name="Shapes").click()  # the shape table goes on past the backbone
        page.wait_for_function("document.querySelector('#shape-table')?.textContent.includes('neck.fuse')")
        assert "decode.postprocess" in page.locator("#diagram").text_content()
    finally:
        page.close()
