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
from dataclasses import dataclass
from typing import Any

import numpy as np

from vecsift.backend.contract import EmbedBackend
from vecsift.errors import BackendError
from vecsift.scheduling.run_state import RunState
from vecsift.scheduling.threads import POLL_SECONDS
from vecsift.scheduling.work_queue import WorkQueue

#: batches in flight for a GPU backend's ring-buffer pipeline (the seed's bound on memory)
RING_SIZE = 4
#: units a GPU backend claims at once (GPU batches are GPU_CLAIM_UNITS × batch_size)
GPU_CLAIM_UNITS = 4

Sink = Callable[[np.ndarray, np.ndarray, int], None]  # (indices, vectors, tokens)


def _checked(backend: EmbedBackend, vectors: np.ndarray, expected: int) -> np.ndarray:
    if not isinstance(vectors, np.ndarray) or vectors.ndim != 2 or vectors.shape[0] != expected:
        shape = getattr(vectors, "shape", type(vectors).__name__)
        raise BackendError(f"{backend.name()} returned {shape} for {expected} inputs")
    return vectors


@dataclass(frozen=True)
class _Slot:
    """A ring slot: the backend's reusable buffers (None for backends without any), boxed so that an empty
    slot is never mistaken for the stop signal ``None``."""

    buffers: Any  # what the backend's new_ring_slot() made


@dataclass(frozen=True)
class RingItem:
    """One prepared batch on its way from the ring's producer to its driving thread."""

    slot: _Slot  # the ring slot whose buffers the batch was packed into
    indices: np.ndarray  # (n,) input positions of the batch's rows
    prepared: Any  # what the backend's prepare_batch returned
    tokens: int


class _Worker:
    """What every worker holds: its backend and label, the shared work queue and run state, and where the
    vectors go."""

    def __init__(self, backend: EmbedBackend, label: str, work: WorkQueue, state: RunState, sink: Sink) -> None:
        self.backend = backend
        self.label = label
        self.work = work
        self.state = state
        self.sink = sink


class CpuWorker(_Worker):
    """Claims one unit at a time and embeds it on its own backend (a clone)."""

    def run(self) -> None:
        try:
            while not self.state.stopped.is_set() and (units := self.work.claim(1)):
                unit = units[0]
                vectors = _checked(self.backend, self.backend.embed_batch(unit.encodings), len(unit.indices))
                self.sink(unit.indices, vectors, unit.tokens)
        except BaseException as err:  # KeyboardInterrupt too: every failure stops the run
            self.state.fail(self.label, err)


class RingWorker(_Worker):
    """Drives one GPU backend, fed by a producer thread through a ring of ``RING_SIZE`` reusable slots."""

    def __init__(self, backend: EmbedBackend, label: str, work: WorkQueue, state: RunState, sink: Sink) -> None:
        super().__init__(backend, label, work, state, sink)
        self._free: queue.Queue[_Slot] = queue.Queue()  # ring slots ready for the producer
        for _ in range(RING_SIZE):
            self._free.put(_Slot(backend.new_ring_slot()))
        self._ready: queue.Queue[RingItem | None] = queue.Queue(maxsize=RING_SIZE)

    def _get(self, source: queue.Queue):
        while not self.state.stopped.is_set():
            try:
                return source.get(timeout=POLL_SECONDS)
            except queue.Empty:
                continue
        return None

    def _put(self, item: RingItem | None) -> None:
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
                prepared = self.backend.prepare_batch(encodings, slot.buffers)
                indices = np.concatenate([unit.indices for unit in units])
                self._put(RingItem(slot, indices, prepared, sum(unit.tokens for unit in units)))
        except BaseException as err:
            self.state.fail(f"{self.label} batch preparation", err)
        finally:
            self._put(None)  # end of input for the driving thread

    def run(self) -> None:
        producer = threading.Thread(target=self._produce, name=f"{self.label} producer", daemon=True)
        producer.start()
        try:
            while (item := self._get(self._ready)) is not None:
                vectors = _checked(self.backend, self.backend.embed_prepared(item.prepared), len(item.indices))
                self._free.put(item.slot)  # the forward pass is done with the slot's buffers
                self.sink(item.indices, vectors, item.tokens)
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
