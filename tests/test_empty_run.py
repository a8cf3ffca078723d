"""A test run that selects nothing fails with its reason (tests/conftest.py), never pytest's exit 5."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_an_empty_selection_fails_with_its_reason() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_")}  # a run of its own, not a worker
    run = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-k", "no_such_test",
                          "tests/test_house.py"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert run.returncode == 1, run.stdout[-500:]
    assert "an empty run is not green" in run.stdout
