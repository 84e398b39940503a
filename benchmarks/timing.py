"""Timing engines against each other: alternating runs in one process, medians compared."""

from __future__ import annotations

import time
from collections.abc import Callable


def alternate(engines: dict[str, Callable[[], object]], repeats: int, warm_up: bool = True
              ) -> tuple[dict[str, list[float]], dict[str, object]]:
    """Seconds per run of each engine, ``repeats`` times, alternating so that drifts of a shared machine hit
    every engine alike, after one untimed warm-up each; also the last output of each engine."""
    outputs = {name: fn() for name, fn in engines.items()} if warm_up else {}
    runs: dict[str, list[float]] = {name: [] for name in engines}
    for _ in range(repeats):
        for name, fn in engines.items():
            start = time.perf_counter()
            outputs[name] = fn()
            runs[name].append(time.perf_counter() - start)
    return runs, outputs
