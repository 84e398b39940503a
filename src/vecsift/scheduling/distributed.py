"""`embed_distributed`: a known list of encodings over one or several backends.

The seed's rules: CPU backends are cloned once per worker thread (BLAS at one
thread each, so the workers use the cores and every vector is bit-identical
whatever the worker count); GPU backends are fed through a ring of
``RING_SIZE`` prepared batches. All workers claim length-sorted units from one
queue and write rows back by input index. The first failure stops every worker
after its current batch and is re-raised once, with the original as its cause.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence

import numpy as np

from vecsift.backend.contract import EmbedBackend
from vecsift.encoding import Encoding
from vecsift.errors import BackendError, EncodingError
from vecsift.scheduling.progress import Progress, ProgressCallback
from vecsift.scheduling.run_state import RunState
from vecsift.scheduling.threads import check_arguments, join_all, single_threaded_kernels
from vecsift.scheduling.work_queue import WorkQueue, length_sorted_units
from vecsift.scheduling.workers import make_workers


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
    backends, workers_per_backend = check_arguments(backends, batch_size, workers)
    encodings = list(encodings)
    for index, encoding in enumerate(encodings):
        if not isinstance(encoding, Encoding):
            raise EncodingError(f"input {index} is a {type(encoding).__name__}, not an Encoding")
    if not encodings:
        return backends[0].embed_batch([])

    state = RunState()
    units = length_sorted_units(encodings, batch_size)
    work = WorkQueue(units, closed=True)
    meter = Progress(progress, len(encodings))
    sink = RowSink(len(encodings), meter)
    # no more CPU workers than units: inputs that fit one batch run on this thread, with no clone or thread to start
    runners = make_workers(backends, min(workers_per_backend, len(units)), work, state, sink)
    threads = [threading.Thread(target=w.run, name=w.label, daemon=True) for w in runners[1:]]
    try:
        with single_threaded_kernels(backends):
            for thread in threads:
                thread.start()
            try:
                runners[0].run()
            finally:
                join_all(threads, state)
    finally:
        meter.close()
    state.raise_error()
    if sink.out is None:
        raise BackendError("no batch was embedded")  # unreachable unless a worker vanished
    return sink.out
