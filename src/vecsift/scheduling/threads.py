"""Thread plumbing every scheduler shares: argument checks, worker counts, kernel threads, joining."""

from __future__ import annotations

import os
import sys
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

from threadpoolctl import threadpool_limits

from vecsift.backend.contract import EmbedBackend
from vecsift.errors import UsageError, positive_int
from vecsift.scheduling.run_state import RunState

POLL_SECONDS = 0.05  # seconds between checks of the stop flag while blocked
JOIN_GRACE = 1.0  # seconds given to threads to finish after a stop


def default_workers() -> int:
    """CPU cores this process may use."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


def check_arguments(backends: Sequence[EmbedBackend] | EmbedBackend, batch_size: int,
                    workers: int | None) -> tuple[list[EmbedBackend], int]:
    """Validated (backends, workers per CPU backend); :class:`UsageError` names what is wrong."""
    if isinstance(backends, EmbedBackend):
        backends = [backends]
    backends = list(backends)
    if not backends or not all(isinstance(b, EmbedBackend) for b in backends):
        raise UsageError("backends must be a non-empty list of EmbedBackend")
    positive_int("batch_size", batch_size)
    workers = positive_int("workers", default_workers() if workers is None else workers)
    return backends, workers


@contextmanager
def single_threaded_kernels(backends: Sequence[EmbedBackend]) -> Iterator[None]:
    """One BLAS (and torch) thread per CPU worker while they run: the workers use the cores, and the
    arithmetic (so every vector, bit for bit) is the same whatever the worker count."""
    if all(b.is_gpu() for b in backends):
        yield
        return
    torch = sys.modules.get("torch")
    saved = torch.get_num_threads() if torch is not None else None
    with threadpool_limits(limits=1, user_api="blas"):
        if torch is not None:
            torch.set_num_threads(1)
        try:
            yield
        finally:
            if torch is not None:
                torch.set_num_threads(saved)


def join_all(threads: Sequence[threading.Thread], state: RunState) -> None:
    """Wait for ``threads``; Ctrl-C stops the run and waits at most a second more."""
    try:
        for thread in threads:
            while thread.is_alive():  # short joins keep Ctrl-C responsive
                thread.join(timeout=0.1)
    except KeyboardInterrupt as interrupt:
        state.fail("interrupted", interrupt)
        for thread in threads:
            thread.join(timeout=JOIN_GRACE / max(1, len(threads)))
