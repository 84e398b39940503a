"""`embed_distributed`: the seed's CPU scheduling rule.

CPU backends are cloned once per worker thread, each clone with its own driver
scratch and BLAS limited to one thread (two single-threaded GEMMs on two cores
beat one two-threaded GEMM plus Python overhead in between). Workers claim
length-sorted batches from one cursor and write rows back by input index. The
first failure stops every worker after its current batch and is re-raised,
with the original as its cause.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Sequence
from contextlib import nullcontext

import numpy as np
from threadpoolctl import threadpool_limits
from tqdm.auto import tqdm

from vecsift.backend.contract import EmbedBackend
from vecsift.encoding import Encoding
from vecsift.errors import BackendError, UsageError, VecsiftError
from vecsift.scheduling.work_queue import SharedCursor, length_sorted_batches

ProgressCallback = Callable[[int], None]


def default_workers() -> int:
    """CPU cores this process may use."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


class _Run:
    """State shared by the workers of one call: cursor, output, first error, progress."""

    def __init__(self, encodings: Sequence[Encoding], batches: list[np.ndarray], progress: ProgressCallback | None):
        self.encodings = encodings
        self.cursor = SharedCursor(batches)
        self.out: np.ndarray | None = None
        self.error: BaseException | None = None
        self.failed_in: str = ""
        self._lock = threading.Lock()
        self._progress = progress

    def work(self, backend: EmbedBackend, label: str) -> None:
        try:
            while (rows := self.cursor.claim()) is not None:
                vectors = backend.embed_batch([self.encodings[i] for i in rows])
                if vectors.shape[0] != len(rows):
                    raise BackendError(f"{backend.name()} returned {vectors.shape[0]} vectors for {len(rows)} inputs")
                with self._lock:
                    if self.out is None:
                        self.out = np.empty((len(self.encodings), vectors.shape[1]), dtype=np.float32)
                    self.out[rows] = vectors
                if self._progress is not None:
                    self._progress(len(rows))
        except BaseException as err:  # KeyboardInterrupt too: every failure stops the run
            with self._lock:
                if self.error is None:
                    self.error, self.failed_in = err, label
            self.cursor.stop()

    def raise_error(self) -> None:
        err = self.error
        if err is None:
            return
        if isinstance(err, KeyboardInterrupt):
            raise err
        message = f"{self.failed_in} failed: {err}"
        if isinstance(err, VecsiftError):
            try:
                raise type(err)(message) from err
            except TypeError:  # an error class with another constructor: keep the original
                raise err from None
        raise BackendError(message) from err


def _worker_backends(backends: Sequence[EmbedBackend], workers: int) -> tuple[list[EmbedBackend], list[EmbedBackend]]:
    """(backends for threads, backends for the calling thread): CPU ones cloned ``workers`` times."""
    threaded: list[EmbedBackend] = []
    inline: list[EmbedBackend] = []
    for backend in backends:
        if backend.supports_clone() and not backend.is_gpu():
            threaded.extend([backend] + [backend.clone_backend() for _ in range(workers - 1)])
        else:
            inline.append(backend)
    if not inline:  # the calling thread works too rather than only waiting
        inline.append(threaded.pop())
    return threaded, inline


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
    """
    if isinstance(backends, EmbedBackend):
        backends = [backends]
    backends = list(backends)
    if not backends or not all(isinstance(b, EmbedBackend) for b in backends):
        raise UsageError("backends must be a non-empty list of EmbedBackend")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise UsageError(f"batch_size must be a positive integer, got {batch_size!r}")
    workers = default_workers() if workers is None else workers
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise UsageError(f"workers must be a positive integer, got {workers!r}")
    encodings = list(encodings)
    if not all(isinstance(e, Encoding) for e in encodings):
        backends[0].embed_batch(encodings)  # raises the precise EncodingError
    if not encodings:
        return backends[0].embed_batch([])

    bar = tqdm(total=len(encodings), unit="text", disable=None) if progress is True else None
    callback = bar.update if bar is not None else (progress or None)
    run = _Run(encodings, length_sorted_batches(encodings, batch_size), callback)
    threaded, inline = _worker_backends(backends, workers)
    # One BLAS thread per CPU worker: the cores are used by the workers, and the arithmetic
    # (so every vector, bit for bit) is the same whatever the number of workers.
    cpu_workers = any(not b.is_gpu() for b in threaded + inline)
    limits = threadpool_limits(limits=1, user_api="blas") if cpu_workers else nullcontext()
    try:
        with limits:
            threads = [
                threading.Thread(target=run.work, args=(b, f"worker {i} ({b.name()})"), daemon=True)
                for i, b in enumerate(threaded)
            ]
            for thread in threads:
                thread.start()
            try:
                for i, backend in enumerate(inline):
                    run.work(backend, f"worker {len(threads) + i} ({backend.name()})")
            finally:
                for thread in threads:
                    while thread.is_alive():  # short joins keep Ctrl-C responsive
                        thread.join(timeout=0.1)
    except KeyboardInterrupt:
        run.cursor.stop()
        raise
    finally:
        if bar is not None:
            bar.close()
    run.raise_error()
    assert run.out is not None
    return run.out
