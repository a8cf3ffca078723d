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

CHROMIUM = Path("/usr/bin/chromium")  # Debian's, installed by `bash dev.sh test`; never a downloaded browser

os.environ["GRADIO_TEMP_DIR"] = _TEMP = tempfile.mkdtemp(prefix="convformer-tests-gradio-")
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
if os.environ.get("PYTEST_XDIST_WORKER"):  # `-n 2`: one core per worker; two threads each would wait on each other
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    import torch
    torch.set_num_threads(1)


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
