"""A CPU lane's forward passes in a process of its own, so that they do not share the server's GIL.

On a busy server the event loop (HTTP, JSON, tokenizing) and every lane's Python between kernels take
turns on one GIL, and a lane's batch costs nearly twice what it costs alone. Here a lane thread packs its
batch, hands it to its own child process over a pipe, and waits for the rows with the GIL released.

The child builds the same backend (model, driver, precision) and runs it single-threaded, as an in-process
lane does: the same arithmetic, so the same vectors. Messages are raw bytes, never pickled arrays:

- request: a header (normalize, inputs, tokens, dense) and one int64 block of ids, positions, token types
  and ``cu_seqlens``;
- answer: ``b"R"`` and the float32 rows, or ``b"E"`` and the error's class name and message.

The child ignores SIGINT and SIGTERM (from its first instruction: it starts with them blocked): a Ctrl-C
in a terminal reaches the whole process group, and the server's graceful stop must still finish what is in
flight. It ends when its pipe closes, so it never outlives the server, however the server ends.

Children are started with ``spawn`` (no fork of a process with torch's threads), which imports the
parent's main script again: a script that serves :func:`~vecsift.server.app.create_app` itself needs the
usual ``if __name__ == "__main__":`` guard (``vecsift`` and ``python -m vecsift`` have it).
"""

from __future__ import annotations

import multiprocessing
import signal
import struct
import time
from dataclasses import dataclass
from multiprocessing.connection import Connection

import numpy as np

from vecsift import errors
from vecsift.backend.token_batch import TokenBatch
from vecsift.errors import BackendError
from vecsift.interrupts import interrupts_held
from vecsift.server.heap import freeze_startup_heap

_HEADER = struct.Struct("<?qq?")  # normalize, inputs, tokens, dense
_READY = b"ready"
START_SECONDS = 120.0  # importing torch and loading the model, on a slow disk


@dataclass(frozen=True)
class LaneSpec:
    """What a child needs to build the server's backend again."""

    model: str
    driver: str
    precision: str


class LaneProcess:
    """One child process computing the batches one lane thread sends it (one at a time)."""

    def __init__(self, spec: LaneSpec, name: str) -> None:
        context = multiprocessing.get_context("spawn")  # no fork of a process with torch's threads
        self._conn, child_end = context.Pipe()
        self.process = context.Process(target=_child_main, args=(child_end, spec), name=name, daemon=True)
        with interrupts_held():  # the child starts with them blocked, so that none lands in its bootstrap
            self.process.start()
        child_end.close()
        self._lost = False  # its pipe broke: it died, or is about to

    @property
    def name(self) -> str:
        return self.process.name

    @property
    def alive(self) -> bool:
        return not self._lost and self.process.is_alive()

    @property
    def exitcode(self) -> int | None:
        return self.process.exitcode

    def wait_ready(self, timeout: float = START_SECONDS) -> None:
        """Block until the child has its model loaded; a child that failed to load raises its error here."""
        deadline = time.monotonic() + timeout
        while not self._conn.poll(0.1):
            if not self.process.is_alive():
                raise BackendError(f"lane process {self.process.name} exited with status {self.process.exitcode} "
                                   "while loading the model")
            if time.monotonic() > deadline:
                raise BackendError(f"lane process {self.process.name} did not load the model in {timeout:.0f} s")
        message = self._receive()
        if message != _READY:
            _raise_sent_error(message)

    def embed(self, batch: TokenBatch, normalize: bool) -> np.ndarray:
        """The rows of ``batch`` (host arrays), computed in the child."""
        header = _HEADER.pack(normalize, batch.num_inputs, batch.total_tokens, batch.dense)
        tokens = np.concatenate([batch.input_ids, batch.position_ids, batch.token_type_ids, batch.cu_seqlens])
        try:
            self._conn.send_bytes(header + tokens.astype(np.int64, copy=False).tobytes())
        except OSError as err:
            self._lost = True
            raise BackendError(f"lane process {self.process.name} is gone: {err}") from err
        answer = self._receive()
        if answer[:1] != b"R":
            _raise_sent_error(answer)
        return np.frombuffer(answer, dtype=np.float32, offset=1).reshape(batch.num_inputs, -1)

    def close(self, timeout: float = 10.0) -> None:
        """End the child (it leaves when its pipe closes) and wait for it."""
        self._conn.close()
        self.process.join(timeout)
        if self.process.is_alive():
            self.process.kill()
            self.process.join()

    def _receive(self) -> bytes:
        try:
            return self._conn.recv_bytes()
        except (EOFError, OSError) as err:
            self._lost = True
            raise BackendError(f"lane process {self.process.name} ended (status {self.process.exitcode})") from err


def _child_main(conn: Connection, spec: LaneSpec) -> None:
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, signal.SIG_IGN)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, (signal.SIGINT, signal.SIGTERM))  # blocked since the start
    from vecsift.backend.loader import load_backend
    from vecsift.scheduling.threads import single_threaded_kernels

    try:
        backend = load_backend("cpu", spec.model, driver=spec.driver, precision=spec.precision)
    except Exception as err:  # reported to the parent, which raises it from wait_ready
        conn.send_bytes(_error_message(err))
        return
    freeze_startup_heap()
    with single_threaded_kernels([backend]):
        conn.send_bytes(_READY)
        while True:
            try:
                message = conn.recv_bytes()
            except (EOFError, OSError):
                return  # the server closed the pipe (or is gone)
            normalize, inputs, tokens, dense = _HEADER.unpack_from(message)
            block = np.frombuffer(message, dtype=np.int64, offset=_HEADER.size)
            ids, positions, types = block[:3 * tokens].reshape(3, tokens)
            batch = TokenBatch(ids, positions, types, block[3 * tokens:3 * tokens + inputs + 1], dense)
            try:
                rows = backend.embed_prepared(backend.driver.upload(batch), normalize)
            except Exception as err:  # a typed error travels back; the lane goes on
                conn.send_bytes(_error_message(err))
                continue
            conn.send_bytes(b"R" + rows.tobytes())


def _error_message(err: BaseException) -> bytes:
    kind = type(err).__name__ if isinstance(err, errors.VecsiftError) else "BackendError"
    message = str(err) if isinstance(err, errors.VecsiftError) else f"{type(err).__name__}: {err}"
    return b"E" + f"{kind}\n{message}".encode()


def _raise_sent_error(message: bytes) -> None:
    """Raise the error a child sent, as its own vecsift error class."""
    kind, _, text = message[1:].decode("utf-8", "replace").partition("\n")
    error_class = getattr(errors, kind, None) if message[:1] == b"E" else None
    if not (isinstance(error_class, type) and issubclass(error_class, errors.VecsiftError)):
        error_class, text = BackendError, text or f"unexpected message from a lane process: {message[:40]!r}"
    raise error_class(text)
