"""Work units and the queue every worker claims them from.

One queue per call: batch embedding fills it up front (globally length-sorted)
and closes it; streaming fills it as texts arrive. Workers claim units in
submission order, so a slow backend holds back a fast one by at most the
units it has claimed itself.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from vecsift.encoding import Encoding


@dataclass(frozen=True)
class WorkUnit:
    """One batch: the inputs' positions in the caller's sequence and their encodings."""

    indices: np.ndarray
    encodings: list[Encoding]

    @property
    def tokens(self) -> int:
        return sum(e.num_tokens for e in self.encodings)


def length_sorted_units(encodings: Sequence[Encoding], batch_size: int, first_index: int = 0) -> list[WorkUnit]:
    """Units of ``batch_size`` inputs, longest first.

    Similar lengths side by side keep sub-batches even; the stable sort makes the
    batching (and so the arithmetic) the same whatever the number of workers.
    """
    lengths = np.fromiter((e.num_tokens for e in encodings), dtype=np.int64, count=len(encodings))
    order = np.argsort(-lengths, kind="stable")
    return [
        WorkUnit(order[i : i + batch_size] + first_index, [encodings[j] for j in order[i : i + batch_size]])
        for i in range(0, len(order), batch_size)
    ]


class WorkQueue:
    """Units in submission order. ``claim`` blocks until a unit is there, the queue is closed, or stopped."""

    def __init__(self, units: Sequence[WorkUnit] = (), closed: bool = False) -> None:
        self._units: deque[WorkUnit] = deque(units)
        self._closed = closed
        self._stopped = False
        self._ready = threading.Condition()

    def put(self, unit: WorkUnit) -> None:
        with self._ready:
            self._units.append(unit)
            self._ready.notify()

    def close(self) -> None:
        """No more units will come; workers finish what is queued and stop."""
        with self._ready:
            self._closed = True
            self._ready.notify_all()

    def stop(self) -> None:
        """Abandon the queue: every waiting and later claim returns nothing."""
        with self._ready:
            self._stopped = True
            self._units.clear()
            self._ready.notify_all()

    def claim(self, max_units: int = 1) -> list[WorkUnit]:
        """Up to ``max_units`` units (waiting only for the first); empty once closed and drained, or stopped."""
        with self._ready:
            while not self._units and not self._closed and not self._stopped:
                self._ready.wait()
            claimed: list[WorkUnit] = []
            while self._units and len(claimed) < max_units and not self._stopped:
                claimed.append(self._units.popleft())
            return claimed
