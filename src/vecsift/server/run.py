"""Running the app: uvicorn (uvloop, httptools) on a socket bound before the model's port is announced,
and a graceful stop on SIGTERM or SIGINT that exits 0.

uvicorn's own signal handling finishes in-flight requests and then re-raises the signal,
so the process dies of SIGTERM (status -15) after a clean shutdown; a service manager
reads that as a crash. Here the graceful shutdown is the end.
"""

from __future__ import annotations

import contextlib
import signal
import socket
import sys
import threading
from collections.abc import Iterator
from typing import Any

import uvicorn

from vecsift.server.heap import freeze_startup_heap
from vecsift.server.tokenizing import without_tokenizer_thread_pool

GRACEFUL_SECONDS = 30  # in-flight requests get this long to finish after SIGTERM


class _GracefulServer(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        previous = {sig: signal.signal(sig, self.handle_exit) for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            yield
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)


def bind(host: str, port: int) -> socket.socket:
    """A listening socket (port 0: any free port), bound before the server starts so its port can be told."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.set_inheritable(True)
    return sock


def run(app: Any, sock: socket.socket, *, graceful_seconds: int = GRACEFUL_SECONDS) -> None:
    config = uvicorn.Config(app, loop="uvloop", http="httptools", lifespan="on", log_level="warning",
                            timeout_graceful_shutdown=graceful_seconds, access_log=False,
                            proxy_headers=False)  # bound to loopback by default: no proxy to trust
    host, port = sock.getsockname()[:2]
    print(f"vecsift: serving on http://{host if ':' not in host else f'[{host}]'}:{port}", file=sys.stderr,
          flush=True)
    freeze_startup_heap()  # the model and the libraries are loaded: no full collection walks them again
    without_tokenizer_thread_pool()
    _GracefulServer(config).run(sockets=[sock])
    print("vecsift: stopped", file=sys.stderr, flush=True)
