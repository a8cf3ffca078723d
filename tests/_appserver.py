"""The app server of the test run (`serve`, in this process) and a launcher for scripts (`app_server`, a
subprocess).

`serve()` starts app.py's `demo` IN this process through `app.launch` (the settings `python app.py` uses),
on 127.0.0.1 and a free port, with the Gradio temp folder that tests/conftest.py set for the test run, so
tests can look inside it and inject faults with monkeypatch. The `server` fixture in tests/conftest.py
is the only server the tests start. `app_server()` runs `python app.py` in a subprocess, for
scripts/soak.py, which measures a server's memory from outside. Readiness is polled, never slept for.
"""
from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent

# a small, fast configuration for API calls: 64 px, 2 blocks, random weights (no bundled checkpoint needed);
# in the order of /predict's parameters after the image (the Controls fields, then the view's)
SMALL = dict(fusion="mid", preset="convformer_mid_tiny", img_size=64, embed_dim=32, depth=2, num_heads=2,
             mlp_ratio=2.0, patch_size=8, conv_widths="16, 32", conv_depths="1, 1", merge="concat",
             weights="random", checkpoint=None, cam_target="predicted class", top_k=3, head_fusion="mean",
             discard_ratio=0.0, cam_layer="", resize="keep")  # every input but the gr.State: raw calls need them all


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Server:
    url: str
    temp_dir: Path            # Gradio's temp folder: uploads and output pictures
    pid: int                  # the serving process (this one for `serve`)
    demo: Any = None          # the gr.Blocks, when served in this process
    proc: subprocess.Popen | None = None
    log: Path | None = None

    def output(self) -> str:
        return self.log.read_text(errors="replace") if self.log else ""


@contextmanager
def serve() -> Iterator[Server]:
    """app.demo served from this process on a free port; closed afterwards."""
    import app
    port = free_port()
    app.launch("127.0.0.1", port, device="cpu", prevent_thread_lock=True, quiet=True)
    try:
        yield Server(f"http://127.0.0.1:{port}", Path(os.environ["GRADIO_TEMP_DIR"]), os.getpid(), app.demo)
    finally:
        app.demo.close()


def _ready(url: str) -> bool:
    try:
        with urllib.request.urlopen(url + "/gradio_api/info", timeout=2) as r:
            return r.status == 200
    except OSError:
        return False


@contextmanager
def app_server(timeout: float = 120.0, extra_env: dict[str, str] | None = None,
               args: tuple[str, ...] = ()) -> Iterator[Server]:
    """Run `python app.py --device cpu` on a free port; yield a Server once /gradio_api/info answers."""
    port = free_port()
    with tempfile.TemporaryDirectory(prefix="convformer-app-") as tmp:
        temp_dir, log = Path(tmp) / "gradio", Path(tmp) / "server.log"
        temp_dir.mkdir()
        env = {**os.environ, "GRADIO_TEMP_DIR": str(temp_dir), "GRADIO_ANALYTICS_ENABLED": "False",
               "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1"),
               **(extra_env or {})}
        env.pop("GRADIO_SERVER_NAME", None)
        with open(log, "wb") as out:
            proc = subprocess.Popen([sys.executable, str(ROOT / "app.py"), "--host", "127.0.0.1", "--port",
                                     str(port), "--device", "cpu", *args], cwd=ROOT, env=env, stdout=out,
                                    stderr=subprocess.STDOUT)
        url = f"http://127.0.0.1:{port}"
        server = Server(url, temp_dir, proc.pid, proc=proc, log=log)
        try:
            deadline = time.monotonic() + timeout
            while not _ready(url):
                if proc.poll() is not None:
                    raise RuntimeError(f"the app exited with {proc.returncode}:\n{server.output()[-3000:]}")
                if time.monotonic() > deadline:
                    raise RuntimeError(f"the app did not answer in {timeout:.0f} s:\n{server.output()[-3000:]}")
                time.sleep(0.2)  # polling interval, not synchronisation
            yield server
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
