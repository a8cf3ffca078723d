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

CHROMIUM = Path("/usr/bin/chromium")
ROOT = Path(__file__).resolve().parent.parent
pytest.importorskip("playwright")
pytestmark = [pytest.mark.app, pytest.mark.skipif(not CHROMIUM.exists(), reason="Debian's Chromium is not installed")]
TIMEOUT = 120_000  # ms; a CPU shared with other work can be slow


@pytest.fixture(scope="module")
def page(server):
    from playwright.sync_api import sync_playwright
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), headless=True,
                                    args=["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                                          "--disable-component-update"])
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.set_default_timeout(TIMEOUT)
        yield page
        browser.close()


def _screenshot(page, path: Path) -> None:
    """A full-page PNG, reduced to 256 colours so it stays small."""
    page.screenshot(path=str(path), full_page=True)
    Image.open(path).convert("RGB").quantize(256, method=Image.Quantize.MEDIANCUT).save(path, optimize=True)


def test_upload_run_click(page, server, tmp_path: Path) -> None:
    page.goto(f"{server.url}/?fusion=vit&weights=bundled")
    page.wait_for_selector("#run")
    fusion = page.locator("#fusion")
    page.wait_for_function("document.querySelector('#fusion input[value=vit]')?.checked")  # URL applied
    page.locator("#image-file input[type=file]").set_input_files(str(ROOT / "assets/examples/shapes_star.png"))
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
