"""The app in a real browser: Playwright drives Debian's Chromium (/usr/bin/chromium; never a downloaded one).

Open the page with a configuration in the URL, upload an example, choose a fusion stage, run, see the label
and the attention overlay, click a patch, and save a screenshot (to $CONVFORMER_SCREENSHOT as well, e.g.
assets/screenshot.png, when that is set).
"""
from __future__ import annotations

import os
from pathlib import Path

import pytest
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.app
TIMEOUT = 120_000  # ms; a CPU shared with other work can be slow


def _open(browser, width: int = 1400, scheme: str = "light"):
    page = browser.new_page(viewport={"width": width, "height": 1000}, color_scheme=scheme)
    page.set_default_timeout(TIMEOUT)
    return page


@pytest.fixture(scope="module")
def page(browser):
    page = _open(browser)
    yield page
    page.close()


def _screenshot(page, path: Path) -> None:
    """A full-page PNG, reduced to 256 colours so it stays small."""
    page.screenshot(path=str(path), full_page=True)
    Image.open(path).convert("RGB").quantize(256, method=Image.Quantize.MEDIANCUT).save(path, optimize=True)


def test_upload_run_click(page, server, tmp_path: Path) -> None:
    page.goto(f"{server.url}/?fusion=vit&weights=bundled")
    page.wait_for_selector("#run")
    fusion = page.locator("#fusion")
    page.wait_for_function("document.querySelector('#fusion input[value=vit]')?.checked")  # URL applied
    page.locator("#preview button[aria-label='Remove Image']").click()  # the page starts with an example chosen
    page.locator("#preview input[type=file]").set_input_files(str(ROOT / "assets/examples/shapes_star.png"))
    page.wait_for_selector("#preview img")
    fusion.get_by_label("mid").check()  # the bundled mid checkpoint where there is one, else the preset
    page.locator("#run").click()
    page.wait_for_selector("#rollout img")
    label = page.locator("#label").inner_text()
    assert "class" in label or "%" in label
    assert "Random weights" in page.locator("#weights-notice").inner_text() or \
        "bundled checkpoint" in page.locator("#weights-notice").inner_text()
    assert "mid" in page.locator("#config-status").inner_text()

    page.get_by_role("tab", name="Attention per block and head").click()
    patch = page.locator("#patch img")
    before = patch.get_attribute("src")
    patch.click(position={"x": 15, "y": 15})  # the top-left patch
    page.wait_for_function("(src) => document.querySelector('#patch img')?.src !== src", arg=before)
    assert page.locator("#query img").count() == 1

    page.get_by_role("tab", name="Attention rollout").click()
    shot = tmp_path / "app.png"
    _screenshot(page, shot)
    assert Image.open(shot).size[0] >= 1000
    if os.environ.get("CONVFORMER_SCREENSHOT"):
        target = Path(os.environ["CONVFORMER_SCREENSHOT"])
        target.write_bytes(shot.read_bytes())


def test_copy_link_shows_the_configuration(page) -> None:
    page.locator("#link").click()
    field = page.locator("#link-box textarea, #link-box input").first
    page.wait_for_function("[...document.querySelectorAll('#link-box textarea, #link-box input')]"
                           ".some(t => t.value.includes('fusion=mid'))")
    assert field.input_value().startswith("http://127.0.0.1")


def _luminance(rgb: tuple[float, ...]) -> float:
    c = [(v / 255) / 12.92 if v / 255 <= 0.03928 else ((v / 255 + 0.055) / 1.055) ** 2.4 for v in rgb[:3]]
    return 0.2126 * c[0] + 0.7152 * c[1] + 0.0722 * c[2]


def _contrast(page, selector: str) -> float:
    """WCAG contrast between an element's text colour and the first opaque background behind it."""
    colours = page.evaluate("""(sel) => {
        const el = document.querySelector(sel); const rgb = s => s.match(/[\\d.]+/g).map(Number);
        let bg = el; while (bg && (getComputedStyle(bg).backgroundColor === 'rgba(0, 0, 0, 0)' ||
                                   rgb(getComputedStyle(bg).backgroundColor)[3] === 0)) bg = bg.parentElement;
        return [rgb(getComputedStyle(el).color), rgb(getComputedStyle(bg || document.body).backgroundColor)];
    }""", selector)
    lighter, darker = sorted((_luminance(c) for c in colours), reverse=True)
    return (lighter + 0.05) / (darker + 0.05)


@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_notice_and_diagram_are_readable(browser, server, scheme: str) -> None:
    """Explore starts with an example image, so Run works at once; the weights notice and the pipeline
    diagram keep their text readable (WCAG contrast >= 4.5) in light and dark mode."""
    page = _open(browser, 1280, scheme)
    try:
        page.goto(server.url)
        page.locator("#run").click()
        page.wait_for_selector("#rollout img")
        assert _contrast(page, "#weights-notice p") >= 4.5
        page.get_by_role("tab", name="Shapes").click()
        page.wait_for_selector("#diagram .cf-box")
        assert _contrast(page, "#diagram .cf-box b") >= 4.5 and _contrast(page, "#diagram .cf-box code") >= 4.5
    finally:
        page.close()


def test_phone_reaches_every_picture_and_the_address_follows(browser, server) -> None:
    """At 390 px every visualisation tab is a visible button (none behind "More tabs"); a link's numbers are
    clamped to the controls' ranges and the address bar then shows what the controls hold."""
    page = _open(browser, 390)
    try:
        page.goto(f"{server.url}/?img_size=99999&depth=3&weights=random")
        page.wait_for_function("location.search.includes('img_size=512')")  # clamped, and the address follows
        for name in ("Attention rollout", "Attention per block and head", "Conv activations", "Grad-CAM", "Shapes"):
            assert page.get_by_role("tab", name=name, exact=True).is_visible(), name
        page.locator("#fusion").get_by_label("late").check()
        page.wait_for_function("location.search.includes('fusion=late')")
    finally:
        page.close()


def test_discard_ratio_typed_then_enter_redraws(page, server) -> None:
    page.goto(server.url)
    page.locator("#run").click()
    page.wait_for_selector("#rollout img")
    before = page.locator("#rollout img").get_attribute("src")
    box = page.locator("#discard input[type=number]")
    box.fill("0.6")
    box.press("Enter")
    page.wait_for_function("(src) => document.querySelector('#rollout img')?.src !== src", arg=before)


def test_training_status_stays_readable_with_the_bar_under_it(browser, server) -> None:
    """On a phone, while the default run streams, the status line is at full opacity and Gradio's progress bar
    sits under its text, not over it (page.css; Gradio fades a pending Markdown to 0.2 and lays the bar on
    top); Cancel then keeps the model and the bar leaves no gap."""
    page = _open(browser, 390)
    try:
        page.goto(server.url)
        page.wait_for_selector("#run")
        page.get_by_role("tab", name="Train").click()
        page.locator("#train").click()
        page.wait_for_function("document.querySelector('#train-status .progress-bar')?.offsetWidth > 0"
                               " && /epoch \\d+\\/\\d+/.test(document.querySelector('#train-status').innerText)")
        text = page.locator("#train-status [data-testid=markdown]").bounding_box()
        bar = page.locator("#train-status .progress-level").bounding_box()
        faded = "getComputedStyle(document.querySelector('#train-status [data-testid=markdown]').parentElement).opacity"
        assert page.evaluate(faded) == "1"
        assert bar["y"] >= text["y"] + text["height"] - 1 and bar["width"] > 0
        page.locator("#cancel").click()
        page.wait_for_function("document.querySelector('#train-status').innerText.includes('Cancelled')")
        assert not page.locator("#train-status .progress-level").is_visible()
    finally:
        page.close()
