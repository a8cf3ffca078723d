"""Latency as a median with its spread after a warm-up, rounded to what it can say, and a busy machine
flagged rather than reported as the model's cost (issue 27)."""
from __future__ import annotations

import itertools

import pytest
import torch

from convformer import timing
from convformer.timing import Latency, forward_latency, measure, rounded


@pytest.mark.parametrize("ms, shown", [(0.8734, "0.87"), (4.4912, "4.5"), (15.4, "15"), (149.6, "150"),
                                       (450.67, "450"), (1523.0, "1500")])
def test_two_significant_digits(ms, shown):
    assert rounded(ms) == shown


def test_warm_up_then_repeated_runs_within_a_budget(monkeypatch):
    calls, clock = [], itertools.count()
    monkeypatch.setattr(timing.time, "perf_counter", lambda: next(clock) / 1000)  # every call "takes" 1 ms
    monkeypatch.setattr(timing, "machine_load", lambda: 0.2)
    t = measure(lambda: calls.append(1), runs=9, budget_s=1.0)
    assert len(calls) == 1 + 9 and t.runs == 9  # one untimed warm-up
    assert t.median == pytest.approx(1.0) and t.low == pytest.approx(1.0) and not t.busy
    assert str(t) == "1.0 ms (1.0-1.0, 9 runs)"
    calls.clear()
    t = measure(lambda: calls.append(1), runs=9, budget_s=0.0015)  # the budget stops it, but 3 runs at least
    assert t.runs == 3


def test_a_busy_machine_is_flagged():
    assert Latency(5.0, 4.8, 5.3, 9, load=3.5).busy          # more runnable tasks than cores
    assert Latency(5.0, 4.0, 149.0, 9, load=0.1).busy        # the runs spread 37x: something else ran
    assert not Latency(5.0, 4.8, 5.3, 9, load=0.5).busy


def test_a_real_forward_pass():
    model = torch.nn.Conv2d(3, 4, 3).eval()
    t = forward_latency(model, torch.rand(1, 3, 16, 16), runs=5)
    assert 3 <= t.runs <= 5 and 0 < t.low <= t.median <= t.high and t.load >= 0
