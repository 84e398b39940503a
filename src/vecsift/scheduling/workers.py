"""Workers: what drives each backend, by the seed's rule.

- CPU backends (cloneable): one :class:`CpuWorker` per clone, each claiming one
  unit at a time.
- GPU backends: a :class:`RingWorker`. A producer thread claims up to
  ``GPU_CLAIM_UNITS`` units at once and prepares them (validation, packing into
  reusable host buffers, the driver's host-to-device copy) into a ring of
  ``RING_SIZE`` slots, while the driving thread runs the forward passes. Memory
  stays bounded by the ring whatever the corpus size, and the GPU never waits
  on host work when the producer keeps up.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable

import numpy as np

from vecsift.backend.contract import EmbedBackend
from vecsift.backend.token_batch import PackBuffers
from vecsift.errors import BackendError
from vecsift.scheduling.run_state import RunState
from vecsift.scheduling.work_queue import WorkQueue

#: batches in flight for a GPU backend's ring-buffer pipeline (the seed's bound on memory)
RING_SIZE = 4
#: units a GPU backend claims at once (GPU batches are GPU_CLAIM_UNITS × batch_size)
GPU_CLAIM_UNITS = 4
POLL_SECONDS = 0.05  # seconds between checks of the stop flag while blocked

Sink = Callable[[np.ndarray, np.ndarray, int], None]  # (indices, vectors, tokens)


def _checked(backend: EmbedBackend, vectors: np.ndarray, expected: int) -> np.ndarray:
    if not isinstance(vectors, np.ndarray) or vectors.ndim != 2 or vectors.shape[0] != expected:
        shape = getattr(vectors, "shape", type(vectors).__name__)
        raise BackendError(f"{backend.name()} returned {shape} for {expected} inputs")
    return vectors


class CpuWorker:
    """Claims one unit at a time and embeds it on its own backend (a clone)."""

    def __init__(self, backend: EmbedBackend, label: str, work: WorkQueue, state: RunState, sink: Sink) -> None:
        self.backend, self.label, self.work, self.state, self.sink = backend, label, work, state, sink

    def run(self) -> None:
        try:
            while not self.state.stopped.is_set() and (units := self.work.claim(1)):
                unit = units[0]
                vectors = _checked(self.backend, self.backend.embed_batch(unit.encodings), len(unit.indices))
                self.sink(unit.indices, vectors, unit.tokens)
        except BaseException as err:  # KeyboardInterrupt too: every failure stops the run
            self.state.fail(self.label, err)


class RingWorker:
    """Drives one GPU backend, fed by a producer thread through a ring of ``RING_SIZE`` reusable slots."""

    def __init__(self, backend: EmbedBackend, label: str, work: WorkQueue, state: RunState, sink: Sink) -> None:
        self.backend, self.label, self.work, self.state, self.sink = backend, label, work, state, sink
        self._free: queue.Queue[PackBuffers] = queue.Queue()
        for _ in range(RING_SIZE):
            self._free.put(PackBuffers())
        self._ready: queue.Queue[tuple | None] = queue.Queue(maxsize=RING_SIZE)

    def _get(self, source: queue.Queue):
        while not self.state.stopped.is_set():
            try:
                return source.get(timeout=POLL_SECONDS)
            except queue.Empty:
                continue
        return None

    def _put(self, item: tuple | None) -> None:
        while not self.state.stopped.is_set():
            try:
                self._ready.put(item, timeout=POLL_SECONDS)
                return
            except queue.Full:
                continue

    def _produce(self) -> None:
        try:
            while not self.state.stopped.is_set() and (units := self.work.claim(GPU_CLAIM_UNITS)):
                slot = self._get(self._free)
                if slot is None:
                    return
                encodings = [e for unit in units for e in unit.encodings]
                prepared = self.backend.prepare_batch(encodings, slot)
                indices = np.concatenate([unit.indices for unit in units])
                self._put((slot, indices, prepared, sum(unit.tokens for unit in units)))
        except BaseException as err:
            self.state.fail(f"{self.label} batch preparation", err)
        finally:
            self._put(None)  # end of input for the driving thread

    def run(self) -> None:
        producer = threading.Thread(target=self._produce, name=f"{self.label} producer", daemon=True)
        producer.start()
        try:
            while (item := self._get(self._ready)) is not None:
                slot, indices, prepared, tokens = item
                vectors = _checked(self.backend, self.backend.embed_prepared(prepared), len(indices))
                self._free.put(slot)  # the forward pass is done with the slot's buffers
                self.sink(indices, vectors, tokens)
        except BaseException as err:
            self.state.fail(self.label, err)
        finally:
            producer.join()


def make_workers(backends: list[EmbedBackend], workers_per_cpu_backend: int, work: WorkQueue, state: RunState,
                 sink: Sink) -> list[CpuWorker | RingWorker]:
    """GPU backends first (each with its ring), then ``workers_per_cpu_backend`` clones of each CPU backend."""
    made: list[CpuWorker | RingWorker] = []
    for number, backend in enumerate(sorted(backends, key=lambda b: not b.is_gpu())):
        label = f"backend {number} ({backend.name()})"
        if backend.is_gpu() or not backend.supports_clone():
            made.append(RingWorker(backend, label, work, state, sink))
            continue
        clones = [backend] + [backend.clone_backend() for _ in range(workers_per_cpu_backend - 1)]
        made.extend(CpuWorker(clone, f"{label} worker {i}", work, state, sink) for i, clone in enumerate(clones))
    state.on_stop(work.stop)
    return made
