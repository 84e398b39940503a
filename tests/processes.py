"""What is running on this machine, for tests that must leave nothing behind."""

from __future__ import annotations

import time
from pathlib import Path


def ray_processes() -> set[int]:
    """Pids of Ray's daemons (raylet, gcs_server), from /proc."""
    found = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                command = (entry / "cmdline").read_bytes()
            except OSError:
                continue  # gone meanwhile
            if b"raylet" in command or b"gcs_server" in command:
                found.add(int(entry.name))
    return found


def gone(pids: set[int], guard: float = 60.0) -> bool:
    """Whether every process of ``pids`` has exited (waiting up to ``guard`` seconds: a hang guard)."""
    deadline = time.monotonic() + guard
    while (pids & ray_processes()) and time.monotonic() < deadline:
        time.sleep(0.2)
    return not (pids & ray_processes())
