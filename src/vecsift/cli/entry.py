"""The ``vecsift`` command's first frame. It imports nothing heavy itself, and holds SIGINT and SIGTERM
back while the engine's modules load (numpy, tokenizers: see :mod:`vecsift.interrupts`), so Ctrl-C or
SIGTERM then ends the process as cleanly as at any later moment: one line, exit 130 or 143, nothing
written."""

from __future__ import annotations

import signal
import sys
import threading
from collections.abc import Sequence

from vecsift.interrupts import interrupts_held


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised where SIGINT raises KeyboardInterrupt, so that the same clean-up runs."""


def _terminate(signum: int, frame: object) -> None:
    raise Terminated


def main(argv: Sequence[str] | None = None) -> int:
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _terminate)
    try:
        with interrupts_held():  # a signal held back is raised on leaving
            from vecsift.cli.main import main as run
        return run(argv)  # it answers signals itself; this catches one in the instants around its handler
    except KeyboardInterrupt as stop:
        terminated = isinstance(stop, Terminated)
        print(f"vecsift: {'terminated' if terminated else 'interrupted'}", file=sys.stderr)
        return 143 if terminated else 130
