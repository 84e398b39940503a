"""Dynamic batching: inputs of concurrent requests share forward passes under a token budget.

Requests arrive from the event loop as :class:`Job` s (already tokenized). One batching
thread takes them in arrival order and packs as many of their inputs as fit in
``max_batch_tokens``. A request too large for what is left of a batch is sliced, and its
remainder goes behind the requests that arrived after it, so a large request delays the
ones behind it by one batch at most. It then runs the batch on the engine's scheduler (CPU worker pool or
GPU ring, ``embed_distributed``), and hands each request its rows back on the event
loop. A request whose client has gone is dropped before it is computed. The event loop
itself never runs a forward pass.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from vecsift.backend.contract import EmbedBackend
from vecsift.encoding import Encoding
from vecsift.errors import VecsiftError
from vecsift.scheduling.distributed import embed_distributed
from vecsift.scheduling.threads import single_threaded_kernels

# The longest a batch waits for the clients just answered to send again. 10 ms took 64 busy single-text
# clients from batches of ~32 (alternating halves) to ~63 and from 650 to 860 texts/s here (3 ms: 760);
# a lone client never waits (its own next request ends the wait).
COALESCE_SECONDS = 0.010


@dataclass
class Job:
    """One request's inputs on their way through the batcher."""

    encodings: list[Encoding]
    normalize: bool
    deliver: Callable[[np.ndarray | None, BaseException | None, float, float], None]  # rows, error, queue s, infer s
    enqueued: float = field(default_factory=time.perf_counter)
    cancelled: bool = False
    next_input: int = 0  # inputs before this one are taken by earlier batches
    rows: np.ndarray | None = None
    done_inputs: int = 0
    queue_seconds: float = -1.0
    inference_seconds: float = 0.0

    @property
    def tokens(self) -> int:
        return sum(len(e) for e in self.encodings)


@dataclass
class BatchStats:
    """What the batcher reports per batch (for the metrics)."""

    inputs: int
    tokens: int
    seconds: float


class Batcher:
    """Owns the batching thread; ``submit`` is safe from any thread."""

    def __init__(self, backends: Sequence[EmbedBackend], *, max_batch_tokens: int, batch_size: int,
                 workers: int | None, on_batch: Callable[[BatchStats], None] | None = None) -> None:
        self.backends = list(backends)
        self.max_batch_tokens = max_batch_tokens
        self.batch_size = batch_size
        self.workers = workers
        self.on_batch = on_batch
        self._queue: deque[Job] = deque()
        self._wake = threading.Condition()
        self._stopping = False
        self._last_inputs = 0  # inputs of the batch computed last: how many clients may be about to send again
        self._arrived = 0  # inputs submitted so far
        self._arrived_before_answers = 0  # ... when the last batch's answers went out
        self.failure: BaseException | None = None  # set if the thread itself died: the server is unhealthy
        self._thread = threading.Thread(target=self._run, name="vecsift-batcher", daemon=True)
        self._thread.start()

    @property
    def queued(self) -> int:
        return len(self._queue)

    def healthy(self) -> bool:
        return self._thread.is_alive() and self.failure is None

    def submit(self, job: Job) -> None:
        with self._wake:
            self._queue.append(job)
            self._arrived += len(job.encodings)
            self._wake.notify()

    def stop(self, timeout: float = 30.0) -> None:
        """Finish what is queued, then end the thread."""
        with self._wake:
            self._stopping = True
            self._wake.notify()
        self._thread.join(timeout)

    def _take_batch(self) -> list[tuple[Job, int, int]] | None:
        """(job, first, last) input slices in arrival order within the token budget; None once stopped and empty."""
        with self._wake:
            while True:
                while self._queue and self._queue[0].cancelled:
                    self._queue.popleft()
                if self._queue:
                    break
                if self._stopping:
                    return None
                self._wake.wait()
            self._coalesce()
            slices: list[tuple[Job, int, int]] = []
            budget = self.max_batch_tokens
            normalize = self._queue[0].normalize
            for job in list(self._queue):
                if job.cancelled or job.normalize != normalize:
                    continue
                first = last = job.next_input
                while last < len(job.encodings):
                    size = len(job.encodings[last])
                    if size > budget and (slices or last > first):
                        break
                    budget -= size
                    last += 1
                if last > first:
                    slices.append((job, first, last))
                    job.next_input = last
                    self._queue.remove(job)
                    if last < len(job.encodings):
                        self._queue.append(job)  # the rest waits behind the requests that came after it
                if budget <= 0 or last < len(job.encodings):
                    break
            return slices

    def _coalesce(self) -> None:
        """Under load, wait a moment for the clients just answered to send again (call with the lock held).

        Without it, N busy clients split into two halves that alternate in batches of N/2, and a forward
        pass costs nearly as much for half the inputs (per-operation overhead dominates small batches).
        The wait ends as soon as as many inputs arrived since the last batch ended as that batch answered,
        so a lone client loses nothing: its next request is that arrival.
        """
        deadline = time.perf_counter() + COALESCE_SECONDS
        while not self._stopping and self._arrived - self._arrived_before_answers < self._last_inputs:
            remaining = deadline - time.perf_counter()
            if remaining <= 0:
                return
            self._wake.wait(remaining)

    def _run(self) -> None:
        try:
            while (batch := self._take_batch()) is not None:
                self._compute(batch)
        except BaseException as err:  # the thread must not die silently: /health reports it
            self.failure = err
            raise

    def _compute(self, batch: list[tuple[Job, int, int]]) -> None:
        started = time.perf_counter()
        encodings = [e for job, first, last in batch for e in job.encodings[first:last]]
        self._last_inputs = len(encodings)
        for job, _, _ in batch:
            if job.queue_seconds < 0:
                job.queue_seconds = started - job.enqueued
        try:
            if batch[0][0].normalize:
                vectors = embed_distributed(encodings, self.backends, self.batch_size, self.workers)
            else:
                with single_threaded_kernels(self.backends[:1]):  # as the worker pool runs: ~8x faster here
                    vectors = self.backends[0].embed_pooled(encodings)
            error: BaseException | None = None
        except (VecsiftError, MemoryError, RuntimeError, ValueError) as err:
            vectors, error = None, err
        elapsed = time.perf_counter() - started
        with self._wake:
            self._arrived_before_answers = self._arrived
        if self.on_batch is not None:
            self.on_batch(BatchStats(len(encodings), sum(len(e) for e in encodings), elapsed))
        offset = 0
        for job, first, last in batch:
            job.inference_seconds += elapsed
            if error is not None:
                job.cancelled = True  # its other slices, if any, are not computed
                job.deliver(None, error, job.queue_seconds, job.inference_seconds)
                continue
            if job.rows is None:
                job.rows = np.empty((len(job.encodings), vectors.shape[1]), dtype=np.float32)
            job.rows[first:last] = vectors[offset:offset + last - first]
            offset += last - first
            job.done_inputs += last - first
            if job.done_inputs == len(job.encodings) and not job.cancelled:
                job.deliver(job.rows, None, job.queue_seconds, job.inference_seconds)
