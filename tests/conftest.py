"""Shared fixtures. `app_url`: the Gradio app (app.py) started once per session in a subprocess, on a free
port on 127.0.0.1, stopped by the fixture's finalizer."""
from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_ready(url: str, proc: subprocess.Popen, timeout: float = 180.0) -> None:
    """Poll the page until it answers 200 (no fixed sleeps); fail early if the server died."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"app.py exited with {proc.returncode} before it was ready")
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        time.sleep(0.2)
    raise TimeoutError(f"app.py did not answer at {url} within {timeout:.0f} s")


@pytest.fixture(scope="session")
def app_url(tmp_path_factory: pytest.TempPathFactory):
    """The URL of a running app server; its log is printed if it fails to start."""
    port = _free_port()
    log_path = tmp_path_factory.mktemp("app") / "server.log"
    env = {**os.environ, "GRADIO_ANALYTICS_ENABLED": "False", "CONVFORMER_DEVICE": "cpu",
           "GRADIO_SERVER_NAME": "127.0.0.1", "GRADIO_SERVER_PORT": str(port)}
    with open(log_path, "wb") as log:
        proc = subprocess.Popen([sys.executable, str(ROOT / "app.py"), "--host", "127.0.0.1", "--port", str(port)],
                                cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/"
    try:
        _wait_ready(url, proc)
    except Exception:
        proc.kill()
        proc.wait(10)
        print(log_path.read_text(errors="replace")[-3000:])
        raise
    yield url
    proc.terminate()
    try:
        proc.wait(15)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(10)
