"""Length-sorted batches handed out from one shared cursor."""

from __future__ import annotations

import threading
from collections.abc import Sequence

import numpy as np

from vecsift.encoding import Encoding


def length_sorted_batches(encodings: Sequence[Encoding], batch_size: int) -> list[np.ndarray]:
    """Input indices, longest first, cut into batches of ``batch_size``.

    Similar lengths side by side keep sub-batches even; the stable sort makes the
    batching (and so the arithmetic) the same whatever the number of workers.
    """
    lengths = np.fromiter((e.num_tokens for e in encodings), dtype=np.int64, count=len(encodings))
    order = np.argsort(-lengths, kind="stable")
    return [order[i : i + batch_size] for i in range(0, len(order), batch_size)]


class SharedCursor:
    """Hands each batch to exactly one worker; ``stop()`` makes every later claim return None."""

    def __init__(self, batches: list[np.ndarray]) -> None:
        self._batches = batches
        self._next = 0
        self._lock = threading.Lock()
        self.stopped = threading.Event()

    def claim(self) -> np.ndarray | None:
        with self._lock:
            if self.stopped.is_set() or self._next >= len(self._batches):
                return None
            batch = self._batches[self._next]
            self._next += 1
            return batch

    def stop(self) -> None:
        self.stopped.set()
