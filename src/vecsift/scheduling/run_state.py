"""Shared fate of one scheduling call: the first failure stops every stage and is raised once."""

from __future__ import annotations

import threading
from collections.abc import Callable

from vecsift.errors import BackendError, VecsiftError


class RunState:
    """Records the first error (with the stage it came from) and tells every stage to stop."""

    def __init__(self) -> None:
        self.stopped = threading.Event()
        self.error: BaseException | None = None
        self.stage = ""
        self._lock = threading.Lock()
        self._on_stop: list[Callable[[], None]] = []

    def on_stop(self, callback: Callable[[], None]) -> None:
        """Run ``callback`` when the run stops (to wake stages blocked on a queue)."""
        self._on_stop.append(callback)

    def fail(self, stage: str, error: BaseException) -> None:
        with self._lock:
            if self.error is None:
                self.error, self.stage = error, stage
        self.stop()

    def stop(self) -> None:
        if not self.stopped.is_set():
            self.stopped.set()
            for callback in self._on_stop:
                callback()

    def raise_error(self) -> None:
        """Raise the recorded error: same type where it is ours, else ``BackendError``; original as cause."""
        error = self.error
        if error is None:
            return
        if isinstance(error, KeyboardInterrupt):
            raise error
        message = f"{self.stage} failed: {error}"
        if isinstance(error, VecsiftError):
            try:
                raised = type(error)(message)
            except TypeError:  # an error class with another constructor: keep the original
                raise error from None
            raise raised from error
        raise BackendError(message) from error
