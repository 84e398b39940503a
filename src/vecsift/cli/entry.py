"""The ``vecsift`` command's first frame. It imports nothing heavy itself, so Ctrl-C or SIGTERM while the
engine's modules load (numpy, tokenizers, torch) ends the process as cleanly as at any later moment:
one line, exit 130 or 143, nothing written."""

from __future__ import annotations

import signal
import sys
import threading
from collections.abc import Sequence


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised where SIGINT raises KeyboardInterrupt, so that the same clean-up runs."""


def _terminate(signum: int, frame: object) -> None:
    raise Terminated


def main(argv: Sequence[str] | None = None) -> int:
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _terminate)
    try:
        from vecsift.cli.main import main as run
    except KeyboardInterrupt as stop:
        terminated = isinstance(stop, Terminated)
        print(f"vecsift: {'terminated' if terminated else 'interrupted'}", file=sys.stderr)
        return 143 if terminated else 130
    return run(argv)
