"""A serving process's start-up heap is left out of the collector's passes (`vecsift.server.heap`), and what
requests allocate afterwards is still collected."""

from __future__ import annotations

import gc
import weakref

from vecsift.server.heap import freeze_startup_heap


class _Node:
    def __init__(self) -> None:
        self.other: _Node | None = None


def _cycle() -> weakref.ref:
    a, b = _Node(), _Node()
    a.other, b.other = b, a
    return weakref.ref(a)


def test_what_exists_at_start_up_is_frozen_and_later_garbage_is_still_collected() -> None:
    try:
        before_start = _cycle()  # garbage already: the collection before the freeze takes it
        freeze_startup_heap()
        assert before_start() is None
        assert gc.get_freeze_count() > 1000  # this test process's modules, at least
        later = _cycle()
        assert later() is not None
        gc.collect()
        assert later() is None
    finally:
        gc.unfreeze()
