"""Test backends: deterministic, slow, failing, or pretending to be a GPU."""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence

import numpy as np

from vecsift import EmbedBackend, Encoding
from vecsift.errors import BackendError


class FakeBackend(EmbedBackend):
    """Vectors derived from the ids alone, so any scheduling must give the same rows."""

    def __init__(self, dim: int = 8, *, gpu: bool = False, delay: float = 0.0, fail_on_id: int | None = None,
                 error: BaseException | None = None):
        self.width = dim
        self.gpu = gpu
        self.delay = delay
        self.fail_on_id = fail_on_id
        self.error = error or BackendError("injected failure")
        self.calls: list[tuple[int, int]] = []  # (thread id, batch size)
        self.clones = 0

    def embed_batch(self, encodings: Sequence[Encoding]) -> np.ndarray:
        self.calls.append((threading.get_ident(), len(encodings)))
        if self.delay:
            time.sleep(self.delay)
        out = np.empty((len(encodings), self.width), dtype=np.float32)
        for row, e in enumerate(encodings):
            if self.fail_on_id is not None and self.fail_on_id in e.input_ids:
                raise self.error
            seed = int(e.input_ids.sum()) * 31 + len(e)
            v = np.random.default_rng(seed).standard_normal(self.width).astype(np.float32)
            out[row] = v / np.linalg.norm(v)
        return out

    def supports_clone(self) -> bool:
        return not self.gpu

    def clone_backend(self) -> FakeBackend:
        if self.gpu:
            raise BackendError("cannot clone")
        self.clones += 1
        clone = FakeBackend(self.width, gpu=self.gpu, delay=self.delay, fail_on_id=self.fail_on_id, error=self.error)
        clone.calls = self.calls  # shared log (list.append is atomic)
        return clone

    def is_gpu(self) -> bool:
        return self.gpu

    def dim(self) -> int:
        return self.width


def encodings_of_lengths(lengths: Sequence[int], offset: int = 1000) -> list[Encoding]:
    return [Encoding.from_ids(np.arange(offset + i, offset + i + n)) for i, n in enumerate(lengths)]


def resident_bytes() -> int:
    """This process's resident memory (Linux)."""
    with open("/proc/self/statm") as handle:
        return int(handle.read().split()[1]) * 4096
