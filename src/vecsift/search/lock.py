"""One writer per index: an exclusive ``flock`` on ``write.lock`` in the index folder.

The lock dies with its process (SIGKILL included), so a crashed writer never
blocks the next one. Readers take no lock: SQLite's WAL gives them snapshots.
"""

from __future__ import annotations

import fcntl
import os
import time
from collections.abc import Callable
from pathlib import Path

from vecsift.errors import IndexBusyError

LOCK_NAME = "write.lock"
POLL_SECONDS = 0.1


class WriterLock:
    """``with WriterLock(directory, wait=True):`` — held for the block, released on any exit."""

    def __init__(self, directory: Path, *, wait: bool = True, on_wait: Callable[[str], None] | None = None) -> None:
        self.path = directory / LOCK_NAME
        self.wait = wait
        self.on_wait = on_wait
        self._fd: int | None = None

    def _holder(self) -> str:
        try:
            pid = self.path.read_text().strip()
        except OSError:
            pid = ""
        return f"process {pid}" if pid else "another process"

    def acquire(self) -> bool:
        """Take the lock; False when it is held elsewhere and ``wait`` is False."""
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        told = False
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if not self.wait:
                    os.close(fd)
                    return False
                if not told and self.on_wait is not None:
                    self.on_wait(f"waiting for {self._holder()} to finish writing the index at {self.path.parent}")
                    told = True
                time.sleep(POLL_SECONDS)
        os.ftruncate(fd, 0)
        os.write(fd, str(os.getpid()).encode())
        self._fd = fd
        return True

    def release(self) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> WriterLock:
        if not self.acquire():
            raise IndexBusyError(f"{self._holder()} is writing the index at {self.path.parent}; "
                                 "try again when it is done (or leave out --no-wait to wait for it)")
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()
