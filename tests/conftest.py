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

import pytest

from ._appserver import Server, serve

os.environ["GRADIO_TEMP_DIR"] = _TEMP = tempfile.mkdtemp(prefix="convformer-tests-gradio-")
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")


def pytest_unconfigure(config: pytest.Config) -> None:
    shutil.rmtree(_TEMP, ignore_errors=True)


@pytest.fixture(scope="session")
def server() -> Iterator[Server]:
    """The running app (url, temp folder, process id, demo)."""
    with serve() as s:
        yield s
