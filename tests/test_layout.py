"""The layout the README describes: the library (`convformer`) imports neither Gradio nor pandas, and the
app package (`convformer_app`) does nothing at import that belongs to start-up."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _python(code: str, **env: str) -> str:
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300,
                          env={**os.environ, **env})
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout.strip()


def test_the_library_imports_no_gradio_or_pandas() -> None:
    loaded = _python("import importlib, pkgutil, sys, convformer\n"
                     "for m in pkgutil.walk_packages(convformer.__path__, 'convformer.'):\n"
                     "    importlib.import_module(m.name)\n"
                     "print(sorted(m for m in ('gradio', 'pandas') if m in sys.modules))")
    assert loaded == "[]"


@pytest.mark.app
def test_importing_the_app_package_changes_nothing() -> None:
    """No device picked and no Gradio internals patched until engine.start() (app.py's launch)."""
    out = _python("import gradio.processing_utils as pu; original = pu.save_pil_to_cache\n"
                  "import importlib, pkgutil, convformer_app\n"
                  "for m in pkgutil.walk_packages(convformer_app.__path__, 'convformer_app.'):\n"
                  "    importlib.import_module(m.name)\n"
                  "from convformer_app import engine\n"
                  "print(pu.save_pil_to_cache is original, engine.DEVICE)",
                  CONVFORMER_DEVICE="meta")  # what the device choice would pick, were it made at import
    assert out == "True cpu"
