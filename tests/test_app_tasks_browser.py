"""The Detect and Segment tasks in Chromium (issues 23 and 24): Segment draws the mask with a legend and scores a
Shapes scene per class; every Explore view is refilled on a task model and on DETR (the COCO detector, from the
offline fake cache of tests/_fake_detr.py), never left showing the previous model's maps; Compare and Train have
their per-task sections, in the page's language. The console stays free of warnings and errors throughout."""
from __future__ import annotations

import pytest

from . import _fake_detr
from .test_coco_detr import offline

pytestmark = pytest.mark.app


@pytest.fixture(scope="module")
def hub(tmp_path_factory):
    path = tmp_path_factory.mktemp("hf-detr") / "hub"
    _fake_detr.write(path)
    with pytest.MonkeyPatch.context() as mp:
        offline(mp, path)  # the server runs in this process: it reads this cache, offline
        yield path


def choose_task_and_scene(page, task: str, index: int = 3) -> None:
    """Task `task`, and Shapes scene `index` as the image (its true boxes and mask are known)."""
    page.locator(f"#task input[value={task}]").check()
    page.wait_for_selector("#scene-render", state="visible")
    page.locator("#scene-index input").fill(str(index))
    before = page.locator("#preview img").first.get_attribute("src")
    page.locator("#scene-render").click()
    page.wait_for_function("(src) => (document.querySelector('#preview img')?.src || '') !== src", arg=before)
    page.wait_for_function(f"document.querySelector('#image-file')?.innerText.includes('scene-test-{index}-')")


def src(page, selector: str) -> str:
    return page.evaluate("(s) => document.querySelector(s + ' img')?.src || ''", selector)


def table_text(page, selector: str) -> str:
    return page.evaluate("(s) => document.querySelector(s)?.textContent || ''", selector)


SHAPES_ZH = {"circle": "圆形", "square": "正方形", "triangle": "三角形", "star": "星形", "cross": "十字", "ring": "圆环",
             "heart": "心形", "arrow": "箭头", "hexagon": "六边形", "crescent": "新月"}
VIEWS = {"Attention rollout": ["#rollout"], "Attention per block and head": ["#patch", "#query"],
         "Conv activations": ["#channels"], "Grad-CAM": ["#cam"]}


def test_segment_shows_the_mask_a_legend_and_iou_and_every_view(open_page):
    page = open_page()
    choose_task_and_scene(page, "segment")
    page.locator("#segment-run").click()
    page.wait_for_function("document.querySelector('#segment-summary').innerText.includes('Mean IoU')")
    # the mask over the image (640 px wide), a legend strip under it
    w, h = page.wait_for_function("() => { const i = document.querySelector('#segment-mask img');"
                                  " return i?.naturalWidth ? [i.naturalWidth, i.naturalHeight] : null; }").json_value()
    assert w == 640 and h > 640
    iou = table_text(page, "#segment-iou")
    assert "background" in iou and "IoU" in iou
    # Explore's views, refilled from the segmenter: attention, click-a-patch, activations, Grad-CAM, shapes
    page.wait_for_function("document.querySelector('#stats').innerText.includes('FLOPs')")
    for tab, selectors in VIEWS.items():
        page.get_by_role("tab", name=tab).click()  # a tab's pictures are drawn when it is shown
        for selector in selectors:
            page.wait_for_function("(s) => document.querySelector(s + ' img')?.src", arg=selector)
    page.get_by_role("tab", name="Shapes").click()
    page.wait_for_function("document.querySelector('#shape-table')?.textContent.includes('head.classify')")
    assert 'argmax' in page.locator('#diagram').text_content()  # the head and its decoding, past the backbone
    page.get_by_role("tab", name="Relevance (Chefer et al.)").click()
    assert "classify" in page.locator("#relevance-note").inner_text()  # said in place, not an old map
    assert not src(page, "#relevance")
    assert not page.console, page.console


def test_detect_views_and_grad_cam_for_a_chosen_box(open_page):
    page = open_page()
    choose_task_and_scene(page, "detect")
    page.locator("#detect-run").click()
    page.wait_for_function("document.querySelector('#detect-summary').innerText.includes('found at score')")
    page.wait_for_function("document.querySelector('#stats').innerText.includes('FLOPs')")
    for tab, selectors in VIEWS.items():  # attention, click-a-patch, activations, Grad-CAM: all on the detector
        page.get_by_role("tab", name=tab).click()
        for selector in selectors:
            page.wait_for_function("(s) => document.querySelector(s + ' img')?.src", arg=selector)
    before = src(page, "#cam")
    page.locator("#task-cam-target input").click()
    boxes = [t for t in page.get_by_role("option").all_inner_texts() if t.strip().startswith("box ")]
    assert boxes, "no detected box to explain"
    page.get_by_role("option", name=boxes[-1].strip()).click()  # the weakest box: not what "predicted" explains
    page.wait_for_function("(s) => (document.querySelector('#cam img')?.src || s) !== s", arg=before)
    assert not page.console, page.console


def test_detect_with_detr_refills_the_views_below(open_page, hub):
    page = open_page()
    page.locator("#run").click()  # a classifier's maps first: they must not stay under DETR's boxes
    page.wait_for_function("document.querySelector('#label')?.innerText.includes('%')")
    page.get_by_role("tab", name="Conv activations").click()
    page.wait_for_function("document.querySelector('#channels img')?.src")
    before = {"#channels": src(page, "#channels")}
    page.get_by_role("tab", name="Attention rollout").click()
    before["#rollout"] = src(page, "#rollout")
    choose_task_and_scene(page, "detect")
    page.locator("#detector input[value=coco]").check()
    page.wait_for_function("document.querySelector('#detect-summary').innerText.includes('Pretrained on COCO')")
    page.wait_for_function("document.querySelector('#stats').innerText.includes('inspected forward pass')")
    for tab, selector in (("Attention rollout", "#rollout"), ("Conv activations", "#channels")):
        page.get_by_role("tab", name=tab).click()
        page.wait_for_function("([s, old]) => (document.querySelector(s + ' img')?.src || old) !== old",
                               arg=[selector, before[selector]])  # DETR's own maps, not the classifier's
    page.get_by_role("tab", name="Attention per block and head").click()
    page.wait_for_function("document.querySelector('#query img')?.src")  # where the centre token looked
    patch = page.locator("#patch img")
    before = patch.get_attribute("src")
    patch.click(position={"x": 15, "y": 15})  # the top-left token: its outline moves there
    page.wait_for_function("(src) => document.querySelector('#patch img')?.src !== src", arg=before)
    page.get_by_role("tab", name="Grad-CAM").click()
    assert "Grad-CAM for this object" in page.locator("#cam-note").inner_text() and not src(page, "#cam")
    page.get_by_role("tab", name="Shapes").click()
    page.wait_for_function("document.querySelector('#shape-table')?.textContent.includes('class_head')")
    assert "class_head" in page.locator("#diagram").text_content()
    assert not page.console, page.console


def test_compare_and_train_per_task_in_chinese(open_page):
    page = open_page(locale="zh-CN")
    page.wait_for_function("document.querySelector('#examples')?.innerText.includes('circle 圆形')")  # captions
    page.locator("#run").click()
    page.wait_for_function("document.querySelector('#label')?.innerText.includes('%')")
    label = page.locator("#label").inner_text()
    assert any(f"{en} {zh}" in label for en, zh in SHAPES_ZH.items()), label  # the classes in both languages
    page.get_by_role("tab", name="对比").click()
    page.wait_for_function("document.querySelector('#compare-task-table')?.textContent.includes('阶段')")
    headers = table_text(page, "#compare-task-table thead")
    assert "延迟" in headers and "latency" not in headers and "stage" not in headers
    page.locator("#compare-task input[value=segment]").check()
    page.locator("#compare-task-run").click()
    page.wait_for_function("document.querySelectorAll('#compare-task-gallery img').length >= 5")
    page.wait_for_function("+document.querySelector('#compare-task-table [role=grid]')?.getAttribute("
                           "'aria-rowcount') >= 6")  # a header and every stage, side by side (a virtual table)
    assert "early" in table_text(page, "#compare-task-table tbody")
    assert "mIoU" in table_text(page, "#compare-task-table thead") and "延迟" in table_text(page, "#compare-task-table thead")
    page.get_by_role("tab", name="训练").click()
    page.locator("#train-task input[value=segment]").check()
    page.locator("#train-task-fusion input[value=cnn]").check()
    page.locator("#train-task-run").click()
    # the metric against time, live: a point per epoch, the axis titled in Chinese
    page.wait_for_function("document.querySelector('#train-task-status')?.innerText.includes('个 epoch')"
                           " || document.querySelector('#train-task-status')?.innerText.includes('完成')")
    page.wait_for_selector("#train-task-plot svg .mark-line path, #train-task-plot svg .mark-symbol path")
    path = "[...document.querySelectorAll('#train-task-plot svg .mark-line path, #train-task-plot svg .mark-symbol path')]"
    assert page.evaluate(f"{path}.some(p => (p.getAttribute('d') || '').length > 2)")  # something drawn
    page.locator("#train-task-stop").click()
    page.wait_for_function("document.querySelector('#train-task-status')?.innerText.includes('完成')")
    assert page.locator(".toast-body.error").count() == 0
    assert not page.console, page.console


def test_a_cnn_says_in_place_why_it_has_no_attention_maps(open_page):
    page = open_page()
    page.locator("#fusion input[value=cnn]").check()
    page.locator("#run").click()
    page.wait_for_function("document.querySelector('#label')?.innerText.includes('%')")
    page.wait_for_function("document.querySelector('#rollout')?.innerText.includes('No attention map')")
    page.locator("#fusion input[value=mid]").check()  # a model with attention: the usual title again
    page.locator("#run").click()
    page.wait_for_function("document.querySelector('#rollout')?.innerText.includes('Rollout over the image')")
    assert not page.console, page.console
