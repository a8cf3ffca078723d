"""In a real browser (Debian's Chromium): the shape table shows its head and total rows without scrolling, even
for a 12-block ViT, and the Code tab shows the model's file with a copy button and a download."""
from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.app


def test_table_head_and_total_in_view_and_the_code_tab(page, server):
    page.goto(f"{server.url}/?fusion=vit&preset=convformer_vit_tiny&weights=random&img_size=64&patch_size=8")
    page.wait_for_function("document.querySelector('#fusion input[value=vit]')?.checked")
    upload = page.locator("#image-file input[type=file]")
    if upload.count():  # else the page starts with an example image already chosen
        upload.set_input_files(str(ROOT / "assets/examples/shapes_star.png"))
        page.wait_for_selector("#preview img")
    page.locator("#run").click()
    page.wait_for_selector("#rollout img")
    page.get_by_role("tab", name="Shapes").click()
    table = page.locator("#shape-table")
    table.get_by_text("total", exact=True).wait_for()
    # every row is rendered inside the table's own box: no inner scrolling hides the head or the total
    hidden = page.evaluate("""() => {
        const root = document.querySelector('#shape-table');
        const box = root.getBoundingClientRect();
        const cells = [...root.querySelectorAll('td, [role=gridcell]')].filter(
            td => ['head', 'total'].includes(td.innerText.trim()));
        const inner = [...root.querySelectorAll('*')].some(e => e.scrollHeight > e.clientHeight + 2 &&
            ['auto', 'scroll'].includes(getComputedStyle(e).overflowY));
        return {found: cells.length, inner,
                outside: cells.filter(td => td.getBoundingClientRect().bottom > box.bottom + 1).length};
    }""")
    assert hidden == {"found": 2, "inner": False, "outside": 0}, hidden
    assert "N=1+8x8=65" in table.inner_text()  # named axes, spelled out for this model

    page.get_by_role("tab", name="Code").click()
    code = page.locator("#code")
    page.wait_for_function("document.querySelector('#code')?.innerText.includes('the complete model in one file')")
    assert code.get_by_role("button").count() >= 1  # copy (and download)
    page.wait_for_selector("#code-file a")
    link = page.locator("#code-file a").first
    assert "convformer_vit" in page.locator("#code-file").inner_text()
    source = page.request.get(link.get_attribute("href")).text()
    assert "class ConvFormer(nn.Module)" in source and "GRID = (8, 8)" in source
