"""The "Which map to trust?" panel in a real browser: open it under Explore, press Score the maps, read the
verdict and the table (pointing game filled: the start image is a bundled Shapes example), then press the
sanity check and read its table; and the relevance map is drawn beside the others after Run."""
from __future__ import annotations

import pytest

pytestmark = pytest.mark.app


def test_trust_panel_buttons(page, server) -> None:
    page.goto(f"{server.url}/?fusion=mid&weights=bundled")
    page.wait_for_selector("#trust")
    page.wait_for_function("document.querySelector('#fusion input[value=mid]')?.checked")
    page.locator("#trust").get_by_text("Which map to trust?").first.click()  # the accordion opens
    page.locator("#trust-run").click()
    page.wait_for_function("document.querySelector('#trust-verdict')?.innerText.includes('Trust')")
    table = page.locator("#trust-table").inner_text()
    assert "relevance" in table and "gradcam" in table and "random" in table
    assert "on the object" in table or "off the object" in table  # the start image is a Shapes example
    page.wait_for_selector("#trust-deletion canvas, #trust-deletion svg")  # the curves are drawn (Vega)

    page.locator("#trust-sanity").click()
    page.wait_for_function("document.querySelector('#trust-sanity-table')?.innerText.includes('fails')")
    sanity = page.locator("#trust-sanity-table").inner_text()
    assert "relevance" in sanity and "random" in sanity


def test_relevance_map_after_run(page) -> None:
    page.locator("#run").click()
    page.get_by_role("tab", name="Relevance").click()
    page.wait_for_selector("#relevance img")
    assert "relevance" in page.locator("#relevance-note").inner_text().lower()


def test_trust_endpoint(server) -> None:
    from gradio_client import Client, handle_file
    from convformer_app.engine import EXAMPLES
    client = Client(server.url, verbose=False)
    out = client.predict(handle_file(str(EXAMPLES / "shapes_heart.png")), "late", weights="bundled",
                         api_name="/trust")
    table, verdict, branches = out[2], out[3], out[4]
    assert verdict.startswith("**Trust") and "cnn" in branches and "vit" in branches
    assert {row[0] for row in table["data"]} == {"relevance", "rollout", "attention", "gradcam", "random"}
