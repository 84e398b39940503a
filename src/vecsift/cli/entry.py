"""The ``vecsift`` command's first frame. It imports nothing heavy itself, and holds SIGINT and SIGTERM
back while the engine's modules load (numpy, tokenizers: a signal handled inside an extension's import code
can leave the interpreter killing itself at exit, or abort it), so Ctrl-C or SIGTERM then ends the process
as cleanly as at any later moment: one line, exit 130 or 143, nothing written."""

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
    main_thread = threading.current_thread() is threading.main_thread()
    if main_thread:
        signal.signal(signal.SIGTERM, _terminate)
    try:
        held = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM}) if main_thread else None
        try:
            from vecsift.cli.main import main as run
        finally:
            if held is not None:
                signal.pthread_sigmask(signal.SIG_SETMASK, held)  # a signal held back is raised here
    except KeyboardInterrupt as stop:
        terminated = isinstance(stop, Terminated)
        print(f"vecsift: {'terminated' if terminated else 'interrupted'}", file=sys.stderr)
        return 143 if terminated else 130
    return run(argv)
