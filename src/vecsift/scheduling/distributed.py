"""`embed_distributed`: a known list of encodings over one or several backends.

The seed's rules: CPU backends are cloned once per worker thread (BLAS at one
thread each, so the workers use the cores and every vector is bit-identical
whatever the worker count); GPU backends are fed through a ring of
``RING_SIZE`` prepared batches. All workers claim length-sorted units from one
queue and write rows back by input index. The first failure stops every worker
after its current batch and is re-raised once, with the original as its cause.
"""

from __future__ import annotations

import os
import sys
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import numpy as np
from threadpoolctl import threadpool_limits

from vecsift.backend.contract import EmbedBackend
from vecsift.encoding import Encoding
from vecsift.errors import BackendError, EncodingError, UsageError, positive_int
from vecsift.scheduling.progress import Progress, ProgressCallback
from vecsift.scheduling.run_state import RunState
from vecsift.scheduling.work_queue import WorkQueue, length_sorted_units
from vecsift.scheduling.workers import make_workers

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


class RowSink:
    """Writes each batch's rows into one output array by input index."""

    def __init__(self, size: int, progress: Progress) -> None:
        self.out: np.ndarray | None = None
        self._size = size
        self._progress = progress
        self._lock = threading.Lock()

    def __call__(self, indices: np.ndarray, vectors: np.ndarray, tokens: int) -> None:
        with self._lock:
            if self.out is None:
                self.out = np.empty((self._size, vectors.shape[1]), dtype=np.float32)
            elif vectors.shape[1] != self.out.shape[1]:
                raise BackendError(f"backends disagree on the dimension: {vectors.shape[1]} vs {self.out.shape[1]}")
            self.out[indices] = vectors
        self._progress.update(len(indices), tokens)


def embed_distributed(
    encodings: Sequence[Encoding],
    backends: Sequence[EmbedBackend],
    batch_size: int = 32,
    workers: int | None = None,
    progress: bool | ProgressCallback = False,
) -> np.ndarray:
    """Embed ``encodings`` on ``backends``: ``(n, dim)`` float32 unit rows, in input order.

    ``workers``: threads per cloneable (CPU) backend, default the usable cores.
    ``progress``: True for a tqdm bar on stderr, or a callable given each batch's size.
    The calling thread drives the first GPU backend (else a CPU worker).
    """
    backends, workers = check_arguments(backends, batch_size, workers)
    encodings = list(encodings)
    for index, encoding in enumerate(encodings):
        if not isinstance(encoding, Encoding):
            raise EncodingError(f"input {index} is a {type(encoding).__name__}, not an Encoding")
    if not encodings:
        return backends[0].embed_batch([])

    state = RunState()
    work = WorkQueue(length_sorted_units(encodings, batch_size), closed=True)
    meter = Progress(progress, len(encodings))
    sink = RowSink(len(encodings), meter)
    drivers = make_workers(backends, workers, work, state, sink)
    threads = [threading.Thread(target=w.run, name=w.label, daemon=True) for w in drivers[1:]]
    try:
        with single_threaded_kernels(backends):
            for thread in threads:
                thread.start()
            try:
                drivers[0].run()
            finally:
                join_all(threads, state)
    finally:
        meter.close()
    state.raise_error()
    if sink.out is None:
        raise BackendError("no batch was embedded")  # unreachable unless a worker vanished
    return sink.out
