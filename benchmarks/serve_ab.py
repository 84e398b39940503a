"""Variants of `vecsift serve` measured alternately under 64 single-text clients: what moved, and where the CPU went.

This VM's speed drifts by up to 20% between hours, so a change to the server is judged only against its
baseline in the same session, run after run in turn. Each variant is a set of environment settings for the
server process (and so its lane processes): ``""`` is the tree as it is, ``PYTHONPATH=/tmp/wt/src`` another
checkout, ``TOKENIZERS_PARALLELISM=true`` a setting. Per round, each variant in turn: a fresh server, a
warm-up, one client sending one text (p50), then ``--runs`` loads of 64 single-text clients, each reporting
texts/s, the server process's CPU per request, the lane processes' CPU per text and how many of the 2 cores
were busy (wrk's share included).

    python -m benchmarks.serve_ab "" "TOKENIZERS_PARALLELISM=true" [--rounds 3] [--runs 2] [--seconds 6]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from benchmarks.serve_load import answered_per_second, load, start, stop, texts
from vecsift.backend.loader import auto_precision

CLIENTS = 64
_TICK = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class Run:
    texts_per_s: float
    server_us_per_request: float
    lanes_ms_per_text: float
    cores_busy: float


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _TICK  # utime + stime


def _children(pid: int) -> list[int]:
    return [int(child) for task in os.listdir(f"/proc/{pid}/task")
            for child in Path(f"/proc/{pid}/task/{task}/children").read_text().split()]


def parse_variant(text: str) -> dict[str, str]:
    """``"A=1,B=2"`` as environment settings (``""``: none)."""
    settings = {}
    for item in filter(None, text.split(",")):
        name, sep, value = item.partition("=")
        if not sep or not name:
            raise SystemExit(f"a variant is NAME=VALUE[,NAME=VALUE…], got {item!r}")
        settings[name] = value
    return settings


def measure(variant: dict[str, str], singles: list[str], runs: int, seconds: int, work: Path
            ) -> tuple[float, list[Run]]:
    """One fresh server with ``variant``'s settings: one client's p50 (ms), then ``runs`` loads of 64 clients."""
    precision = auto_precision("cpu", "all-MiniLM-L6-v2").precision  # as `make bench-serve` runs it
    command = [sys.executable, "-m", "vecsift", "serve", "--port", "0", "--precision", precision,
               "--max-concurrent-requests", str(16 * CLIENTS)]
    saved = dict(os.environ)
    os.environ.update(variant)
    try:
        process, url = start(command)
    finally:
        os.environ.clear()
        os.environ.update(saved)
    try:
        load(url, singles[:CLIENTS], 8, 2, work)  # warm-up
        one = load(url, singles, 1, 3, work)["p50"] / 1000
        results = []
        for _ in range(runs):
            pids = [process.pid, *_children(process.pid)]
            before = [_cpu_seconds(pid) for pid in pids]
            started = time.perf_counter()
            r = load(url, singles, CLIENTS, seconds, work)
            wall = time.perf_counter() - started
            used = [(_cpu_seconds(pid) - b) / wall for pid, b in zip(pids, before, strict=True)]
            rate = answered_per_second(r)
            results.append(Run(rate, used[0] / rate * 1e6, sum(used[1:]) / rate * 1e3, sum(used) + r["wrk_cpu"]))
        return one, results
    finally:
        stop(process)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("variants", nargs="+", help='environment settings per variant, e.g. "" "A=1,B=2"')
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--runs", type=int, default=2, help="loads of 64 clients per server started")
    parser.add_argument("--seconds", type=int, default=6)
    args = parser.parse_args()
    variants = [parse_variant(v) for v in args.variants]
    singles = [json.dumps({"input": t, "model": "all-MiniLM-L6-v2"}) for t in texts(2048)]
    p50s: list[list[float]] = [[] for _ in variants]
    runs: list[list[Run]] = [[] for _ in variants]
    with tempfile.TemporaryDirectory(prefix="vecsift-ab-") as work:
        for _ in range(args.rounds):
            for i, variant in enumerate(variants):
                one, results = measure(variant, singles, args.runs, args.seconds, Path(work))
                p50s[i].append(one)
                runs[i].extend(results)
                for run in results:
                    print(f"{args.variants[i] or '(as it is)'}: {run.texts_per_s:.0f} texts/s, server "
                          f"{run.server_us_per_request:.0f} µs/request, lanes {run.lanes_ms_per_text:.3f} ms/text, "
                          f"cores busy {run.cores_busy:.2f}", flush=True)
    for i, label in enumerate(args.variants):
        rates = [run.texts_per_s for run in runs[i]]
        print(f"{label or '(as it is)'}: median {statistics.median(rates):.0f} texts/s ({min(rates):.0f}–"
              f"{max(rates):.0f}), server {statistics.median(r.server_us_per_request for r in runs[i]):.0f} "
              f"µs/request, lanes {statistics.median(r.lanes_ms_per_text for r in runs[i]):.3f} ms/text, "
              f"cores busy {statistics.median(r.cores_busy for r in runs[i]):.2f}, one client p50 "
              f"{statistics.median(p50s[i]):.2f} ms")


if __name__ == "__main__":
    main()
