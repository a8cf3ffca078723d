"""The first ten minutes of a new user, in Chromium (issue 27): the examples click, a file dropped on the image
area replaces the example, the prediction is in view after Run on a laptop and a phone, Train, Cancel and the
status are in view together, the charts' axis labels lie inside their plots, and the console stays free of
warnings and errors on load, Run, Train and Cancel."""
from __future__ import annotations

import base64
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.app
LAPTOP, PHONE = (1280, 900), (390, 844)


def in_view(page, selector: str, whole: bool = False) -> bool:
    """The element's box is inside the viewport (`whole`), or its top 40 px are."""
    return page.evaluate("""([sel, whole]) => {
        const r = document.querySelector(sel).getBoundingClientRect();
        const bottom = whole ? r.bottom : r.top + Math.min(40, r.height);
        return r.height > 0 && r.top >= 0 && bottom <= window.innerHeight && r.left >= 0 && r.right <= window.innerWidth;
    }""", [selector, whole])


def top_class(page) -> str:
    """The predicted class: the line after the Label's own title ("Prediction")."""
    lines = [line.strip() for line in page.locator("#label").inner_text().splitlines() if line.strip()]
    return lines[1]


def run_and_wait(page) -> None:
    page.locator("#run").click()
    page.wait_for_function("document.querySelector('#label')?.innerText.includes('%')")


def picture(page) -> str:
    return page.locator("#preview img").first.get_attribute("src") or ""


def wait_for_a_new_picture(page, before: str) -> None:
    page.wait_for_function("(src) => (document.querySelector('#preview img')?.src || '') !== src", arg=before)


def test_clicking_a_thumbnail_changes_the_image_and_run_uses_it(open_page):
    page = open_page()
    before = picture(page)
    page.locator("#examples").get_by_text("circle", exact=True).click()
    wait_for_a_new_picture(page, before)
    run_and_wait(page)
    assert top_class(page) == "circle"  # the bundled mid model sees it
    assert not page.console, page.console  # no "example None does not exist"


def test_a_file_dropped_on_the_image_area_replaces_the_example(open_page):
    page = open_page()
    before = picture(page)
    data = base64.b64encode((ROOT / "assets/examples/shapes_heart.png").read_bytes()).decode()
    page.evaluate("""(data) => {
        const bytes = Uint8Array.from(atob(data), c => c.charCodeAt(0));
        const dt = new DataTransfer();
        dt.items.add(new File([bytes], 'my_heart.png', {type: 'image/png'}));
        const zone = document.querySelector('#preview .upload-container');  // "Drop an image file here"
        for (const type of ['dragenter', 'dragover', 'drop'])
            zone.dispatchEvent(new DragEvent(type, {dataTransfer: dt, bubbles: true, cancelable: true}));
    }""", data)
    wait_for_a_new_picture(page, before)
    page.wait_for_function("document.querySelector('#image-file')?.innerText.includes('my_heart')")
    run_and_wait(page)
    assert top_class(page) == "heart"


@pytest.mark.parametrize("size", [LAPTOP, PHONE], ids=["1280x900", "390x844"])
def test_after_run_the_prediction_is_in_view(open_page, size):
    """Run is within the first screen and a half (a phone had it ~1,900 px down, under the file, capture,
    preview, resize, examples, fusion and preset), and after Run the prediction is in view."""
    page = open_page(size)
    top = page.evaluate("document.querySelector('#run').getBoundingClientRect().top + window.scrollY")
    assert top < 1.5 * size[1], f"Run is {top:.0f} px down"
    page.locator("#run").scroll_into_view_if_needed()
    run_and_wait(page)
    page.wait_for_function("""() => { const r = document.querySelector('#label').getBoundingClientRect();
                                      return r.top >= 0 && r.top + 40 <= window.innerHeight; }""")
    assert in_view(page, "#label")


@pytest.mark.parametrize("size", [LAPTOP, PHONE], ids=["1280x900", "390x844"])
def test_train_cancel_and_the_status_are_in_view_together(open_page, size):
    page = open_page(size)
    page.get_by_role("tab", name="Train").click()
    page.locator("#train").scroll_into_view_if_needed()
    for selector in ("#train", "#cancel", "#train-status"):
        assert in_view(page, selector), selector


def test_chart_axis_labels_lie_inside_their_plots(open_page):
    page = open_page()
    page.get_by_role("tab", name="Train").click()
    page.wait_for_selector("#acc-plot svg .role-axis-label text")
    for plot in ("#loss-plot", "#acc-plot"):
        outside = page.evaluate("""(sel) => {
            const box = document.querySelector(sel).getBoundingClientRect();
            return [...document.querySelectorAll(sel + ' svg .role-axis-label text, ' + sel + ' svg .role-axis-title text')]
                .filter(t => t.textContent.trim())
                .map(t => [t.textContent, t.getBoundingClientRect()])
                .filter(([, r]) => r.left < box.left - 1 || r.right > box.right + 1 || r.top < box.top - 1
                                   || r.bottom > box.bottom + 1)
                .map(([text]) => text);
        }""", plot)
        assert not outside, (plot, outside)


def test_no_console_warnings_or_errors_on_load_run_train_and_cancel(open_page):
    page = open_page()
    run_and_wait(page)
    page.get_by_role("tab", name="Train").click()
    page.locator("#train").click()
    page.wait_for_function("!document.querySelector('#train-status').innerText.includes('Press Train')")  # started
    page.evaluate("""() => { window.cfErrorBadges = 0;  // Gradio's red "Error" on an output, however briefly
        new MutationObserver(() => { if ([...document.querySelectorAll('[class^="error "]')].some(
            e => e.offsetParent !== null && e.textContent.trim())) window.cfErrorBadges++; })
            .observe(document.body, {subtree: true, childList: true, characterData: true, attributes: true}); }""")
    page.locator("#cancel").click()
    page.wait_for_function("document.querySelector('#train-status').innerText.includes('Cancelled')")
    errors = page.locator(".toast-body.error")
    assert errors.count() == 0, errors.all_inner_texts()
    assert page.evaluate("window.cfErrorBadges") == 0
    assert not page.console, page.console
