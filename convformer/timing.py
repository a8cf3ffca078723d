"""Latency of a forward pass as a median with its spread, and whether the machine was busy while it was
measured (then the numbers say more about the other work than about the model).

    t = forward_latency(model, x)
    str(t)   # "4.5 ms (4.3-5.1, 9 runs)"; t.busy: the load average passed the cores, or the runs spread 2x
"""
from __future__ import annotations

import math
import os
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

BUSY_SPREAD = 2.0   # the slowest quarter's edge over the fastest's beyond this: something else ran meanwhile


@dataclass(frozen=True)
class Latency:
    """Milliseconds: the median and the quartiles of `runs` timed calls after a warm-up."""
    median: float
    low: float       # first quartile
    high: float      # third quartile
    runs: int
    load: float      # 1-minute load average per usable core at the end (0 where the OS has none)

    @property
    def busy(self) -> bool:
        """Other work competed: more runnable tasks than cores, or the runs spread by BUSY_SPREAD or more."""
        return self.load > 1.0 or self.high > BUSY_SPREAD * max(self.low, 1e-9)

    def __str__(self) -> str:
        return f"{rounded(self.median)} ms ({rounded(self.low)}-{rounded(self.high)}, {self.runs} runs)"


def rounded(ms: float) -> str:
    """Two significant digits, no trailing noise: 0.87, 4.5, 15, 150, 1500."""
    if ms <= 0 or not math.isfinite(ms):
        return f"{ms:g}"
    ms = float(f"{ms:.2g}")
    return f"{ms:.{max(0, 1 - math.floor(math.log10(ms)))}f}"


def machine_load() -> float:
    """The 1-minute load average divided by the cores this process may use (0.0 where unknown)."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        cores = os.cpu_count() or 1
    try:
        return os.getloadavg()[0] / cores
    except (AttributeError, OSError):
        return 0.0


def measure(call: Callable[[], object], runs: int = 9, budget_s: float = 0.5, warmup: int = 1,
            sync: Callable[[], None] | None = None) -> Latency:
    """Time `call` after `warmup` untimed calls: up to `runs` times, at least 3, and stop early once the
    timed calls pass `budget_s` together."""
    for _ in range(warmup):
        call()
    times: list[float] = []
    while len(times) < runs and (len(times) < 3 or sum(times) < 1000 * budget_s):
        start = time.perf_counter()
        call()
        if sync is not None:
            sync()
        times.append(1000 * (time.perf_counter() - start))
    q = statistics.quantiles(times, n=4, method="inclusive")
    return Latency(statistics.median(times), q[0], q[2], len(times), machine_load())


def forward_latency(model: nn.Module, x: torch.Tensor, runs: int = 9, budget_s: float = 0.5) -> Latency:
    """A plain forward pass of `model` on `x` (no gradients), timed by `measure`."""
    sync = torch.cuda.synchronize if x.device.type == "cuda" else None
    with torch.inference_mode():
        return measure(lambda: model(x), runs, budget_s, sync=sync)


__all__ = ["BUSY_SPREAD", "Latency", "forward_latency", "machine_load", "measure", "rounded"]
