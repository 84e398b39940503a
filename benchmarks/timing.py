"""Timing engines against each other: alternating runs in one process, medians compared."""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from pathlib import Path


def benchmark_arguments(description: str, results: Path, *, chunks: int, repeats: int,
                        batch_size: int) -> argparse.ArgumentParser:
    """The options every benchmark script takes; each adds its own to the parser it gets back."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--chunks", type=int, default=chunks)
    parser.add_argument("--repeats", type=int, default=repeats)
    parser.add_argument("--batch-size", type=int, default=batch_size)
    parser.add_argument("--max-tokens", type=int, default=256)
    parser.add_argument("--write", action="store_true", help=f"write this script's section of {results.name}")
    return parser


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
