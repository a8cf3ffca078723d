"""Shared fixtures: `server`, the one app server of the test run (app.py's demo served in this process by
tests/_appserver.serve, started on first use, closed at the end).

The Gradio temp folder is set here, before any test module imports Gradio or builds the app, to a private
folder that is removed at the end of the run: tests can look inside it.
"""
from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from ._appserver import Server, serve

BROWSER_TIMEOUT = 240_000  # ms: a CPU shared with other work can be slow
CHROMIUM = Path("/usr/bin/chromium")  # Debian's, installed by `bash dev.sh test`; never a downloaded browser

os.environ["GRADIO_TEMP_DIR"] = _TEMP = tempfile.mkdtemp(prefix="convformer-tests-gradio-")
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
if os.environ.get("PYTEST_XDIST_WORKER"):  # `-n 2`: one core per worker; two threads each would wait on each other
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    import torch
    torch.set_num_threads(1)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """A run that selected no test fails with its reason: pytest's exit 5 ("no tests collected") never ends a run,
    so a CI that would read it as "nothing to do" cannot pass on an empty selection."""
    if exitstatus == pytest.ExitCode.NO_TESTS_COLLECTED and not os.environ.get("PYTEST_XDIST_WORKER"):
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
        session.config.pluginmanager.get_plugin("terminalreporter").write_line(
            "FAILED: no test was selected (check the paths, -k and -m given): an empty run is not green", red=True)


def pytest_unconfigure(config: pytest.Config) -> None:
    shutil.rmtree(_TEMP, ignore_errors=True)


@pytest.fixture(scope="session")
def server() -> Iterator[Server]:
    """The running app (url, temp folder, process id, demo)."""
    with serve() as s:
        yield s


@pytest.fixture(scope="module")
def browser(server: Server):
    """Headless Chromium driven by Playwright, for the browser tests of one module. A missing browser is a
    failure with its fix, not a skip: a run that silently leaves out the browser tests is not green."""
    assert CHROMIUM.exists(), f"Debian's Chromium is missing at {CHROMIUM}: `bash dev.sh test` installs it"
    from playwright.sync_api import sync_playwright
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), headless=True,
                                    args=["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                                          "--disable-component-update"])
        yield browser
        browser.close()


@pytest.fixture(scope="module")
def page(browser):
    """One page for a module's tests, 1400 x 1000."""
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    page.set_default_timeout(BROWSER_TIMEOUT)
    yield page
    page.close()


@pytest.fixture
def open_page(browser, server):
    """Fresh pages, each in its own browser context (size, colour scheme, locale), loaded at `query` and ready
    (the load events done: a drop before Gradio wired its drop target goes nowhere), its console warnings and
    errors collected in page.console; closed at the end of the test."""
    contexts = []

    def open_(size=(1280, 900), scheme="light", locale="en-US", query=""):
        context = browser.new_context(locale=locale, viewport={"width": size[0], "height": size[1]},
                                      color_scheme=scheme)
        contexts.append(context)
        page = context.new_page()
        page.set_default_timeout(BROWSER_TIMEOUT)
        page.console = []
        page.on("console", lambda m: page.console.append(f"{m.type}: {m.text}") if m.type in ("warning", "error")
                else None)
        page.on("pageerror", lambda e: page.console.append(f"pageerror: {e}"))
        page.goto(f"{server.url}/{query}")
        page.wait_for_selector("#run")
        page.wait_for_function("document.querySelector('#config-status')?.innerText.trim().length > 0")
        return page
    yield open_
    for context in contexts:
        context.close()
