"""Dynamic batching: inputs of concurrent requests share forward passes under a token budget.

Requests arrive from the event loop as :class:`Job` s (already tokenized) in one FIFO queue.
*Lanes* take them in arrival order, as many inputs as fit in ``max_batch_tokens``, compute, and hand
each request its rows back on the event loop:

- CPU backends: one lane per worker, each computing in a process of its own (:mod:`.lane_process`: the
  forward passes never wait for the server's GIL) or, in-process, on its own clone of the backend (torch
  and BLAS at one thread each, as the worker pool runs them). A lane takes a batch when it is free, so
  while one computes, the clients another just answered send again: the cores do not both wait for a
  round trip. A lane takes at most its share of what is queued (queued inputs / idle lanes), so two idle
  lanes split a burst. A lane that dies makes the batcher unhealthy, and what is queued gets its error.
- GPU backends (or a single CPU worker): one lane that runs each batch on the engine's scheduler
  (``embed_distributed``: the GPU ring, or the worker pool).

Under load a free lane waits a moment so that it does not compute a handful of inputs at a time
(:meth:`Batcher._coalesce`): on the scheduler or on a thread for its share of the outstanding inputs (see
:data:`COALESCE_SECONDS`); a lane process only while it finds fewer than :data:`MIN_BATCH_INPUTS` queued
and another lane computes at least as many (see :data:`MIN_BATCH_SECONDS`).

A request too large for what is left of a batch is sliced, and its remainder goes behind the requests
that arrived after it, so a large request delays the ones behind it by one batch at most. A request
whose client has gone is dropped before it is computed. The event loop itself never runs a forward pass.
"""

from __future__ import annotations

import math
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field

import numpy as np

from vecsift.backend.contract import EmbedBackend
from vecsift.encoding import Encoding
from vecsift.errors import BackendError, VecsiftError
from vecsift.scheduling.distributed import embed_distributed
from vecsift.scheduling.threads import default_workers, single_threaded_kernels
from vecsift.server.lane_process import LaneProcess, LaneSpec

# The longest a free lane waits for its share of the outstanding inputs. One lane: 10 ms took 64 busy
# single-text clients from batches of ~32 (alternating halves) to ~63 and from 650 to 860 texts/s here
# (3 ms: 760). Two lanes on threads: no wait 918, 3 ms 1038, 10 ms 985-1085 (a noisy machine); with packed
# GEMM weights, no wait 1004-1115 against 1040-1159. A lone client never waits (its one request is all that
# is outstanding). Lane processes do not wait for their share (only for a minimum batch, below): a forward
# pass costs about the same per text from ~16 inputs up (packed weights), and that wait left each core idle
# a quarter of the time. Alternating on 2 cores, not waiting against 10 ms: 64 clients 1366-1422 texts/s
# against 1226-1252, 8 clients 667-713 against 605-627, 64 clients of 32 texts 1954-1980 against 1810-1909.
COALESCE_SECONDS = 0.010
# A free lane process that finds fewer than MIN_BATCH_INPUTS inputs queued while another lane computes at
# least that many waits up to MIN_BATCH_SECONDS for more: the clients that lane just answered are sending
# again. Under 64 single-text clients, without it, batches of 1-8 short texts held 9% of the texts and took
# 16% of the lanes' forward time (1.6-3.2 ms per text against 1.0-1.1 in batches of 17-64); with it 5% and
# 11%. Alternating, 4 runs each: 1,325-1,501 texts/s against 1,165-1,474, the lanes 1.04-1.20 ms of CPU per
# text against 1.18-1.37. Fewer clients never wait: 8 clients 595-635 texts/s against 591-635 (a bare
# minimum batch, without the other lane's count, cost 8 clients 16%).
MIN_BATCH_INPUTS = 16
MIN_BATCH_SECONDS = 0.004
# How stale "every lane process is alive" may be: polling each on every request cost ~14% of the event
# loop at 64 busy clients.
PROCESS_POLL_SECONDS = 0.05


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
    delivered: bool = False  # its rows or its error went out (lanes may compute its slices side by side)

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
    """Owns the lanes (threads); ``submit`` is safe from any thread."""

    def __init__(self, backends: Sequence[EmbedBackend], *, max_batch_tokens: int, batch_size: int,
                 workers: int | None, on_batch: Callable[[BatchStats], None] | None = None,
                 lane_spec: LaneSpec | None = None) -> None:
        self.backends = list(backends)
        self.max_batch_tokens = max_batch_tokens
        self.batch_size = batch_size
        self.workers = workers
        self.on_batch = on_batch
        self.lane_spec = lane_spec
        self._processes: list[LaneProcess] = []
        self._processes_alive = True
        self._processes_polled = -math.inf
        self._queue: deque[Job] = deque()
        self._wake = threading.Condition()
        self._stopping = False
        self._idle_lanes = 0  # lanes waiting for work
        self._arrived = 0  # inputs submitted so far
        self._finished = 0  # ... and answered or dropped
        self.failure: BaseException | None = None  # set if a lane itself died: the server is unhealthy
        self._results = threading.Lock()  # a job's bookkeeping, which two lanes may touch at once
        self._kernels = ExitStack()
        lane_backends = self._lane_backends()
        if lane_backends is not None:  # CPU lanes: one thread per core for the server's lifetime
            self._kernels.enter_context(single_threaded_kernels(self.backends))
            self._lanes = [threading.Thread(target=self._run, args=(backend,), name=f"vecsift-lane-{n}",
                                            daemon=True) for n, backend in enumerate(lane_backends)]
        else:
            self._lanes = [threading.Thread(target=self._run, args=(None,), name="vecsift-batcher",
                                            daemon=True)]
        #: how long a free lane waits for its share of the outstanding inputs, or (lane processes) for a
        #: minimum batch while another lane is busy (:meth:`_coalesce`)
        self.coalesce_seconds = MIN_BATCH_SECONDS if self._processes else COALESCE_SECONDS
        for lane in self._lanes:
            lane.start()

    def _lane_backends(self) -> list[EmbedBackend | LaneProcess] | None:
        """One clone (or, with ``lane_spec``, one process) per CPU lane, or None for a single lane on the
        scheduler (GPUs, one worker)."""
        if len(self.backends) != 1 or self.backends[0].is_gpu() or not self.backends[0].supports_clone():
            return None
        lanes = self.workers or default_workers()
        if lanes < 2:
            return None
        if self.lane_spec is not None:
            self._processes = [LaneProcess(self.lane_spec, f"vecsift-lane-{n}") for n in range(lanes)]
            try:
                for process in self._processes:
                    process.wait_ready()
            except BaseException:
                self._close_processes()
                raise
            return list(self._processes)
        return [self.backends[0]] + [self.backends[0].clone_backend() for _ in range(lanes - 1)]

    def _close_processes(self) -> None:
        for process in self._processes:
            process.close()

    @property
    def lanes(self) -> int:
        return len(self._lanes)

    @property
    def queued(self) -> int:
        return len(self._queue)

    def healthy(self) -> bool:
        """Every lane running (asked per request: a lane process is polled at most every
        :data:`PROCESS_POLL_SECONDS`, since each poll is a ``waitpid``)."""
        if self.failure is not None or not all(lane.is_alive() for lane in self._lanes):
            return False
        now = time.monotonic()
        if now - self._processes_polled >= PROCESS_POLL_SECONDS:
            self._processes_alive = all(process.alive for process in self._processes)
            self._processes_polled = now
        return self._processes_alive

    def submit(self, job: Job) -> None:
        with self._wake:
            self._queue.append(job)
            self._arrived += len(job.encodings)
            self._wake.notify()

    def stop(self, timeout: float = 30.0) -> None:
        """Finish what is queued, then end the lanes."""
        with self._wake:
            self._stopping = True
            self._wake.notify_all()
        deadline = time.monotonic() + timeout
        for lane in self._lanes:
            lane.join(max(0.0, deadline - time.monotonic()))
        self._close_processes()
        self._kernels.close()

    def _take_batch(self) -> list[tuple[Job, int, int]] | None:
        """(job, first, last) input slices in arrival order within the token budget and this lane's share;
        None once stopped and empty."""
        with self._wake:
            self._idle_lanes += 1
            try:
                while True:
                    if self._queued_work():
                        self._coalesce()  # releases the lock while it waits: another lane may take it all
                        if self._queued_work():
                            break
                        continue
                    if self._stopping:
                        return None
                    self._wake.wait()
                share = math.ceil(sum(len(j.encodings) - j.next_input for j in self._queue) / self._idle_lanes)
            finally:
                self._idle_lanes -= 1
            slices: list[tuple[Job, int, int]] = []
            budget = self.max_batch_tokens
            normalize = self._queue[0].normalize
            for job in list(self._queue):
                if job.cancelled or job.normalize != normalize:
                    continue
                first = last = job.next_input
                while last < len(job.encodings) and share > 0:
                    size = len(job.encodings[last])
                    if size > budget and (slices or last > first):
                        break
                    budget -= size
                    share -= 1
                    last += 1
                if last > first:
                    slices.append((job, first, last))
                    job.next_input = last
                    self._queue.remove(job)
                    if last < len(job.encodings):
                        self._queue.append(job)  # the rest waits behind the requests that came after it
                if budget <= 0 or share <= 0 or last < len(job.encodings):
                    break
            if self._queue:
                self._wake.notify()  # work left for another idle lane
            return slices

    def _queued_work(self) -> bool:
        """Whether a job is queued (dropping cancelled ones at the head first; call with the lock held)."""
        while self._queue and self._queue[0].cancelled:
            dropped = self._queue.popleft()
            self._finished += len(dropped.encodings) - dropped.next_input
        return bool(self._queue)

    def _coalesce(self) -> None:
        """Under load, wait a moment for more inputs before taking a batch (call with the lock held).

        Outstanding inputs are those submitted and not yet answered: queued or computing on another lane.
        Taking whatever is queued the moment a lane is free would split busy clients into small groups that
        each get a batch of their own, and a forward pass costs nearly as much for a few inputs as for many
        (per-operation overhead dominates small batches). A lane on a thread or on the scheduler waits for
        its share, 1/N of the outstanding inputs with N lanes (64 busy clients, 2 lanes: batches of up to
        ~32, staggered; one lane waits for them all). A lane process computes as soon as
        :data:`MIN_BATCH_INPUTS` are queued, or no other lane computes that many (waiting for a share left
        each core idle a quarter of the time). A lone client never waits (its one request is all that is outstanding).
        """
        if self.coalesce_seconds <= 0:
            return
        deadline = time.perf_counter() + self.coalesce_seconds
        while not self._stopping:
            queued = sum(len(job.encodings) - job.next_input for job in self._queue if not job.cancelled)
            outstanding = self._arrived - self._finished
            if self._processes:
                if queued >= MIN_BATCH_INPUTS or outstanding - queued < MIN_BATCH_INPUTS:
                    return
            elif queued * len(self._lanes) >= outstanding:
                return
            remaining = deadline - time.perf_counter()
            if remaining <= 0:
                return
            self._wake.wait(remaining)

    def _run(self, backend: EmbedBackend | LaneProcess | None) -> None:
        try:
            while (batch := self._take_batch()) is not None:
                self._compute(batch, backend)
                if isinstance(backend, LaneProcess) and not backend.alive:
                    self._lane_lost(BackendError(f"lane process {backend.name} ended (status {backend.exitcode})"))
                    return
        except BaseException as err:  # a lane must not die silently: /health reports it
            self._lane_lost(err)
            raise

    def _lane_lost(self, err: BaseException) -> None:
        """A lane is gone: /health reports it from now on, and what is queued is answered with the error
        rather than left waiting."""
        self.failure = err
        print(f"vecsift: a lane stopped ({err}); /health reports the server unhealthy", file=sys.stderr, flush=True)
        with self._wake:
            stranded = list(self._queue)
            self._queue.clear()
            for job in stranded:
                self._finished += len(job.encodings) - job.next_input
        with self._results:
            for job in stranded:
                if not job.delivered:
                    job.cancelled = job.delivered = True
                    job.deliver(None, err, max(job.queue_seconds, 0.0), job.inference_seconds)

    def _embed(self, encodings: list[Encoding], normalize: bool, backend: EmbedBackend | LaneProcess | None
               ) -> np.ndarray:
        if backend is None:  # the scheduler: GPU ring or worker pool
            if normalize:
                return embed_distributed(encodings, self.backends, self.batch_size, self.workers)
            with single_threaded_kernels(self.backends[:1]):  # as the worker pool runs: ~8x faster here
                return self.backends[0].embed_pooled(encodings)
        # a lane's own clone: length-sorted, so attention runs over few equal-length runs
        order = np.argsort(np.fromiter(map(len, encodings), dtype=np.int64, count=len(encodings)), kind="stable")
        ordered = [encodings[i] for i in order.tolist()]
        if isinstance(backend, LaneProcess):
            vectors = backend.embed(self.backends[0].prepare_batch(ordered), normalize)  # CPU: host arrays
        else:
            vectors = backend.embed_batch(ordered) if normalize else backend.embed_pooled(ordered)
        out = np.empty_like(vectors)
        out[order] = vectors
        return out

    def _compute(self, batch: list[tuple[Job, int, int]], backend: EmbedBackend | LaneProcess | None) -> None:
        started = time.perf_counter()
        encodings = [e for job, first, last in batch for e in job.encodings[first:last]]
        for job, _, _ in batch:
            if job.queue_seconds < 0:
                job.queue_seconds = started - job.enqueued
        try:
            vectors = self._embed(encodings, batch[0][0].normalize, backend)
            error: BaseException | None = None
        except (VecsiftError, MemoryError, RuntimeError, ValueError) as err:
            vectors, error = None, err
        elapsed = time.perf_counter() - started
        with self._wake:
            self._finished += len(encodings)
            self._wake.notify_all()  # fewer outstanding: a coalescing lane may have its share now
        if self.on_batch is not None:
            self.on_batch(BatchStats(len(encodings), sum(len(e) for e in encodings), elapsed))
        offset = 0
        with self._results:
            for job, first, last in batch:
                rows = None if vectors is None else vectors[offset:offset + last - first]
                offset += last - first
                job.inference_seconds += elapsed
                if job.delivered:  # another slice of it failed already
                    continue
                if error is not None:
                    job.cancelled = True  # its other slices, if any, are not computed
                    job.delivered = True
                    job.deliver(None, error, job.queue_seconds, job.inference_seconds)
                    continue
                if job.rows is None:
                    job.rows = np.empty((len(job.encodings), vectors.shape[1]), dtype=np.float32)
                job.rows[first:last] = rows
                job.done_inputs += last - first
                if job.done_inputs == len(job.encodings) and not job.cancelled:
                    job.delivered = True
                    job.deliver(job.rows, None, job.queue_seconds, job.inference_seconds)
