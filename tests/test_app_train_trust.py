"""Training you can trust (issue 27): a run folder per app process (a second app never removes a running
one's), the time estimate recomputed from the measured speed, a warning when a run will pass the server's
time limit, the reason a run stopped named, and where the time went from the press to the verdict."""
from __future__ import annotations

import os
import subprocess
import sys
from types import SimpleNamespace

import pytest

from convformer_app.train import handlers as train_tab, jobs

pytestmark = pytest.mark.app


def test_each_app_process_has_its_own_run_folder_and_removes_only_dead_ones():
    root = jobs.run_root()
    assert root.name == str(os.getpid())
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead = root.parent / gone.stdout.strip()           # a process that has ended
    alive = root.parent / str(os.getppid())            # another process that is running (stands in for an app)
    legacy = root.parent / "run-abc123"                # a run of the layout before per-process folders
    mine = root / "run-mine"
    for d in (dead, alive, legacy, mine):
        (d / "x").mkdir(parents=True, exist_ok=True)
    jobs.clean_start()
    assert not dead.exists() and not legacy.exists()
    assert alive.exists() and mine.exists()
    for d in (alive, mine):
        jobs.shutil.rmtree(d)


INFO = dict(epoch=1, epochs=5, total_steps=400, loss=1.234, val_acc=None, images_per_s=100.0)


def test_the_estimate_follows_the_measured_speed_and_warns_before_the_limit():
    early = train_tab._status({**INFO, "step": 2, "elapsed": 1.0}, "shapes", estimate=30, limit=600)
    assert "measuring" in early and "left" not in early
    on_time = train_tab._status({**INFO, "step": 40, "elapsed": 3.0}, "shapes", estimate=30, limit=600)
    assert "about 27 s left (about 30 s in all at this speed; estimated 30 s before the start)" in on_time
    assert "limit" not in on_time
    slow = train_tab._status({**INFO, "step": 40, "elapsed": 80.0}, "shapes", estimate=30, limit=600)
    assert "about 800 s in all at this speed; estimated 30 s before the start)" in slow
    assert "passes this server's 10-minute limit" in slow


def _job(stop: str) -> SimpleNamespace:
    history = [{"epoch": 1, "val_acc": 0.9, "step": 10, "time": 5.0}]
    result = SimpleNamespace(best=history[0], history=history, train_time=5.0, test=None, stop=stop,
                             cancelled=stop in ("cancelled", "time_limit"))
    return SimpleNamespace(result=result, fusion="late", phases={}, pressed=0.0)


@pytest.mark.parametrize("stop, said", [("completed", "✓ **Done.**"), ("cancelled", "**Cancelled"),
                                        ("time_limit", "time limit (10 min)"), ("target_acc", "target")])
def test_the_stop_reason_is_named(stop, said):
    assert said in train_tab._final(_job(stop), "shapes")


def test_where_the_time_went():
    job = _job("completed")
    job.pressed = 100.0
    job.phases = dict(zip(train_tab.PHASES, (106.0, 106.5, 108.0, 108.2, 108.3, 140.3, 141.0, 141.2, 141.5, 141.6)))
    line = train_tab.where_the_time_went(job)
    assert line.startswith("From pressing Train to this line: 42 s")
    for part in ("data 6.0 s", "child process start 2.2 s", "model 0.1 s", "training 32 s", "final test 0.7 s",
                 "checkpoint 0.2 s", "the rest 0.4 s"):
        assert part in line, (part, line)
    job.phases.pop("kept")
    assert train_tab.where_the_time_went(job) == ""  # a run that did not get to the end says nothing


def test_a_spare_worker_waits_with_torch_imported_and_ends_with_its_server():
    jobs.spare()
    proc = jobs._SPARE
    assert proc is not None and proc.poll() is None
    assert jobs._worker() is proc and jobs._SPARE is None  # the next run takes it
    proc.stdin.close()  # the server went away before a run came
    assert proc.wait(60) == 0 and proc.stdout.read() == ""
