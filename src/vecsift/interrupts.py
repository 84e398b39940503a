"""Ctrl-C and SIGTERM held back while native extensions import (numpy, tokenizers, torch).

A KeyboardInterrupt raised inside an extension's import code ends badly: through C++ (torch) it aborts
the interpreter (``terminate called ... pybind11::error_already_set``, exit 134); inside Python code an
extension runs with ``PyRun_String`` it marks the interrupt as unhandled, and the interpreter kills itself
with SIGINT at exit (status -2) even after the command answered it. Blocking the signals in the main
thread alone is not enough: the kernel then delivers them to another thread (OpenBLAS's, tokenizers'),
whose C handler still trips the main thread. So both are done here: blocked in this thread, and the
Python-level handlers replaced by ones that only remember the signal; the remembered one is delivered
to the original handler right after, where a KeyboardInterrupt is an ordinary one.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager

_SIGNALS = (signal.SIGINT, signal.SIGTERM)


@contextmanager
def interrupts_held() -> Iterator[None]:
    """Run the body with SIGINT and SIGTERM held; one that arrived meanwhile is delivered on leaving it
    (outside the main thread, where Python never runs signal handlers, the body just runs)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    arrived: list[int] = []
    previous = {signum: signal.signal(signum, lambda signum, frame: arrived.append(signum)) for signum in _SIGNALS
                if signal.getsignal(signum) is not None}  # None: a handler set outside Python, left alone
    mask = signal.pthread_sigmask(signal.SIG_BLOCK, _SIGNALS)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, mask)  # one still pending runs the remembering handler
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        if arrived:
            _deliver(arrived[0], previous[arrived[0]])


def _deliver(signum: int, handler: object) -> None:
    """What ``signum`` would have done under ``handler``: a Python handler runs (SIGINT's default raises
    KeyboardInterrupt), the default action is taken (SIGTERM ends the process), an ignored one is dropped."""
    if callable(handler):
        handler(signum, None)
    elif handler == signal.SIG_DFL:
        signal.raise_signal(signum)
