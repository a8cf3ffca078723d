"""The Study tab: the committed results in both languages, and the quick study pressed in a browser (Run, then
Cancel: the child stops and the page says so)."""
from __future__ import annotations

import json

import pytest

from convformer.study import FULL, RESULTS
from convformer.study.study import document
from convformer_app import i18n, study
from tests.test_study import _fake_runs

pytestmark = pytest.mark.app
TIMEOUT = 180_000  # ms: the child imports torch on a CPU shared with other work


def _doc(n_seeds: int = 3) -> dict:
    acc = {m: [0.8, 0.82, 0.85][:n_seeds] for m in
           ("early", "mid", "late", "cnn", "vit", "late/cnn", "late/vit", "mid@1", "mid@2")}
    acc["late"] = [0.9, 0.91, 0.92][:n_seeds]
    return document(FULL, _fake_runs(acc), complete=n_seeds == 3, planned=87,
                    where={"device": "cpu", "threads": 2, "wall_s": 12.0, "load_before": [1, 1, 1],
                           "load_after": [2, 2, 2]})


@pytest.mark.parametrize("lang", i18n.LANGS)
def test_results_in_the_page_language(lang: str) -> None:
    token = i18n.LANG.set(lang)
    try:
        text = study.results_markdown(_doc())
        fig = study.figure(_doc())
    finally:
        i18n.LANG.reset(token)
    supported = i18n.text("study.verdict.supported", lang=lang)
    assert f"**{supported}**" in text  # late beats every other stage over 3 seeds
    assert i18n.text("study.claim.late_best", lang=lang) in text
    assert "| early | 222k | 9.5 |" in text and "82.3 [80.0, 85.0]" in text
    assert len(fig.axes) == 8


def test_a_partial_study_says_so_and_one_seed_is_inconclusive() -> None:
    doc = _doc(1)
    text = study.results_markdown(doc)
    assert i18n.text("study.partial") in text
    assert {c["verdict"] for c in doc["claims"]} == {"inconclusive"}
    assert "the means lean" in text


def test_committed_results_load_or_say_there_are_none(tmp_path) -> None:
    assert study.load(tmp_path / "absent.json") is None
    assert study.results_markdown(None) == i18n.text("study.none")
    if RESULTS.exists():  # the committed document is complete enough to show
        doc = json.loads(RESULTS.read_text())
        assert {c["id"] for c in doc["claims"]} == set(study.CLAIM_IDS)
        assert study.committed()[1] is not None


def test_run_then_cancel_in_a_browser(server, browser) -> None:
    from playwright.sync_api import expect
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    page.set_default_timeout(TIMEOUT)
    try:
        page.goto(server.url)
        page.get_by_role("tab", name="Study").click()
        page.wait_for_function("document.querySelector('#study-results')?.innerText.length > 20")
        page.locator("#study-run").click()
        page.wait_for_function("/Rendering the images|Run \\d+\\/\\d+/.test("
                               "document.querySelector('#study-status').innerText)")
        page.locator("#study-cancel").click()
        # the run's own last update and Cancel's "Stopping…" may cross; the page ends on what after_cancel writes
        expect(page.locator("#study-status")).to_contain_text("■ Stopped", timeout=TIMEOUT)
    finally:
        page.close()
    assert not any(j.running for j in study.train_tab.JOBS.values())
