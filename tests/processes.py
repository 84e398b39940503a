"""What is running on this machine, for tests that must leave nothing behind."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
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


def spawned_children(parent: int) -> set[int]:
    """Pids of ``parent``'s children started by multiprocessing's spawn (a server's lane processes)."""
    found = set()
    for entry in Path("/proc").iterdir():
        with contextlib.suppress(OSError):  # gone meanwhile
            if (entry.name.isdigit() and b"spawn_main" in (entry / "cmdline").read_bytes()
                    and int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1]) == parent):
                found.add(int(entry.name))
    return found


def existing(pids: set[int]) -> set[int]:
    """Those of ``pids`` that still exist."""
    return {pid for pid in pids if Path(f"/proc/{pid}").exists()}


def gone(pids: set[int], guard: float = 60.0, running: Callable[[], set[int]] = ray_processes) -> bool:
    """Whether every process of ``pids`` has exited (waiting up to ``guard`` seconds: a hang guard);
    ``running``: what is running among the processes of their kind."""
    deadline = time.monotonic() + guard
    while (pids & running()) and time.monotonic() < deadline:
        time.sleep(0.2)
    return not (pids & running())
