"""`embed_stream`: embed an iterable of texts lazily, yielding vectors in input order.

Stages, each on its own thread, connected by bounded hand-offs:

    texts ──reader──▶ inbox ──tokenizer──▶ WorkQueue ──workers (CPU clones, GPU rings)──▶ results ──▶ caller

Memory is bounded by a permit per text: the reader takes one before pulling a
text and the caller's iteration gives it back when that text's vector is
yielded. So texts pulled but not yet yielded never exceed ``bound`` =
``(RING_SIZE + 2) × batch_size + window``, whatever the corpus size; ``window``
(default ``4 × batch_size``) is how many texts are tokenized and length-sorted
together. The tokenizer sends a partial window on as soon as the input pauses
(a slow source, or a reader waiting for permits), so the pipeline cannot stall
on its own input and a text typed into a pipe is embedded at once.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterable, Iterator, Sequence

import numpy as np

from vecsift.backend.contract import EmbedBackend
from vecsift.errors import BackendError, EncodingError, UsageError, positive_int
from vecsift.scheduling.progress import Progress, ProgressCallback
from vecsift.scheduling.run_state import RunState
from vecsift.scheduling.threads import POLL_SECONDS, check_arguments, single_threaded_kernels
from vecsift.scheduling.work_queue import WorkQueue, length_sorted_units
from vecsift.scheduling.workers import RING_SIZE, make_workers
from vecsift.tokenizer import Tokenizer

STOP_SECONDS = 30.0  # the longest a stop waits for one thread to finish its current batch
#: how long the input may pause before a partial window is tokenized and sent on
IDLE_FLUSH_SECONDS = 0.005
_END = object()  # the end of the input, in the inbox


class _Stages:
    """What the stream's threads share. The threads reference this object, never the
    :class:`EmbeddingStream`, so a stream the caller drops is collected, and closing it stops them."""

    def __init__(self, texts: Iterable[str], backends: list[EmbedBackend], tokenizer: Tokenizer, batch_size: int,
                 workers: int, max_tokens: int | None, window: int, progress: bool | ProgressCallback) -> None:
        self.bound = (RING_SIZE + 2) * batch_size + window
        self.pulled = 0
        self.yielded = 0
        self.max_in_flight = 0
        self.truncated = 0  # texts the tokenizer cut at the limit
        self.texts = texts
        self.backends = backends
        self.tokenizer = tokenizer
        self.batch_size = batch_size
        self.workers = workers
        self.max_tokens = max_tokens
        self.window = window
        self.progress = progress
        self.counts = threading.Lock()
        self.permits = threading.Semaphore(self.bound)
        self.state = RunState()
        self.inbox: queue.Queue[str | object] = queue.Queue()  # bounded by the permits
        self.work = WorkQueue()
        self.results: queue.Queue[tuple[np.ndarray, np.ndarray]] = queue.Queue()
        self.threads: list[threading.Thread] = []
        self.meter: Progress | None = None

    def pull(self) -> None:
        """The caller's iterable into the inbox, one permit per text (memory stays bounded)."""
        try:
            for text in self.texts:
                if not isinstance(text, str):
                    raise EncodingError(f"text {self.pulled} is a {type(text).__name__}, not a str")
                while not self.permits.acquire(timeout=POLL_SECONDS):
                    if self.state.stopped.is_set():
                        return
                if self.state.stopped.is_set():
                    return
                with self.counts:
                    self.pulled += 1
                    self.max_in_flight = max(self.max_in_flight, self.pulled - self.yielded)
                self.inbox.put(text)
        except BaseException as err:
            self.state.fail("reading the input", err)
        finally:
            self.inbox.put(_END)

    def tokenize(self) -> None:
        """Tokenize and length-sort the inbox's texts a window at a time. A partial window goes as soon as
        the input pauses (:data:`IDLE_FLUSH_SECONDS`), so text arriving slowly (a pipe, a terminal, a source
        waiting for permits) gets its vectors without waiting for more input."""
        pending: list[str] = []
        tokenized = 0

        def flush() -> None:
            nonlocal tokenized
            if pending:
                encodings = self.tokenizer.encode(pending, max_tokens=self.max_tokens)
                self.truncated += sum(e.truncated for e in encodings)
                for unit in length_sorted_units(encodings, self.batch_size, first_index=tokenized):
                    self.work.put(unit)
                tokenized += len(pending)
                pending.clear()

        try:
            while not self.state.stopped.is_set():
                try:  # nothing pending: wait as long as any stage polls its stop flag
                    text = self.inbox.get(timeout=IDLE_FLUSH_SECONDS if pending else POLL_SECONDS)
                except queue.Empty:
                    flush()
                    continue
                if text is _END:
                    flush()
                    return
                pending.append(text)
                if len(pending) >= self.window:
                    flush()
        except BaseException as err:
            self.state.fail("tokenizer", err)
        finally:
            self.work.close()

    def sink(self, indices: np.ndarray, vectors: np.ndarray, tokens: int) -> None:
        self.results.put((indices, vectors))
        assert self.meter is not None
        self.meter.update(len(indices), tokens)

    def start(self) -> None:
        total = len(self.texts) if isinstance(self.texts, Sequence) else None
        self.meter = Progress(self.progress, total)
        self.texts = iter(self.texts)
        runners = make_workers(self.backends, self.workers, self.work, self.state, self.sink)
        self.threads = [threading.Thread(target=self.pull, name="vecsift reader", daemon=True),
                        threading.Thread(target=self.tokenize, name="vecsift tokenizer", daemon=True)]
        self.threads += [threading.Thread(target=w.run, name=w.label, daemon=True) for w in runners]
        for thread in self.threads:
            thread.start()

    def stop(self) -> None:
        """Stop every stage and wait for the threads: a worker finishes the batch it is computing first
        (the interpreter must not exit while one is inside a native forward pass)."""
        self.state.stop()
        for thread in self.threads:
            thread.join(timeout=STOP_SECONDS)
        if self.meter is not None:
            self.meter.close()


def _collect(stages: _Stages) -> Iterator[np.ndarray]:
    """The caller's side: results back in input order, one permit given back per vector yielded."""
    with single_threaded_kernels(stages.backends):
        yield from _in_order(stages)


def _in_order(stages: _Stages) -> Iterator[np.ndarray]:
    stages.start()
    ready: dict[int, np.ndarray] = {}
    try:
        while True:
            try:
                indices, vectors = stages.results.get(timeout=POLL_SECONDS)
            except queue.Empty:
                if stages.state.error is not None:
                    break
                if any(t.is_alive() for t in stages.threads) or not stages.results.empty():
                    continue
                break  # every stage finished and every result was collected
            ready.update(zip(indices.tolist(), vectors, strict=True))
            while stages.yielded in ready:
                vector = ready.pop(stages.yielded)
                with stages.counts:
                    stages.yielded += 1
                stages.permits.release()
                yield vector
        stages.state.raise_error()
        if ready or stages.yielded != stages.pulled:
            raise BackendError(f"stream ended with {stages.pulled - stages.yielded} texts not embedded")
    finally:
        stages.stop()


class EmbeddingStream(Iterator[np.ndarray]):
    """Iterator of ``(dim,)`` float32 unit vectors, one per input text, in order.

    ``pulled``, ``yielded``, ``max_in_flight`` (the most texts ever pulled but not
    yet yielded), ``tokens`` and ``truncated`` (texts cut at the limit) tell how far
    it got. Closing it early, leaving its ``with`` block, dropping it, or an error in
    any stage stops every thread.
    """

    def __init__(self, texts: Iterable[str], backends: list[EmbedBackend], tokenizer: Tokenizer, batch_size: int,
                 workers: int, max_tokens: int | None, window: int, progress: bool | ProgressCallback) -> None:
        self._stages = _Stages(texts, backends, tokenizer, batch_size, workers, max_tokens, window, progress)
        self._iterator = _collect(self._stages)

    bound = property(lambda self: self._stages.bound)
    pulled = property(lambda self: self._stages.pulled)
    yielded = property(lambda self: self._stages.yielded)
    max_in_flight = property(lambda self: self._stages.max_in_flight)
    truncated = property(lambda self: self._stages.truncated)

    @property
    def tokens(self) -> int:
        return self._stages.meter.tokens if self._stages.meter else 0

    def __iter__(self) -> EmbeddingStream:
        return self

    def __next__(self) -> np.ndarray:
        return next(self._iterator)

    def close(self) -> None:
        """Stop every stage now; vectors not yet yielded are dropped."""
        self._iterator.close()

    def __del__(self) -> None:
        iterator = getattr(self, "_iterator", None)
        if iterator is not None:
            iterator.close()

    def __enter__(self) -> EmbeddingStream:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def embed_stream(
    texts: Iterable[str],
    backends: Sequence[EmbedBackend],
    tokenizer: Tokenizer,
    batch_size: int = 32,
    *,
    workers: int | None = None,
    max_tokens: int | None = None,
    window: int | None = None,
    progress: bool | ProgressCallback = False,
) -> EmbeddingStream:
    """Vectors of ``texts`` in input order, embedded while the input is still being read.

    Holds at most ``(RING_SIZE + 2) × batch_size + window`` texts pulled but not
    yet yielded (``window`` defaults to ``4 × batch_size``).
    """
    backends, workers = check_arguments(backends, batch_size, workers)
    window = 4 * batch_size if window is None else window
    positive_int("window", window)
    if not isinstance(tokenizer, Tokenizer):
        raise UsageError(f"tokenizer must be a vecsift Tokenizer (load_tokenizer), got {type(tokenizer).__name__}")
    tokenizer.limit_for(max_tokens)  # a bad max_tokens fails here, not in a thread
    return EmbeddingStream(texts, backends, tokenizer, batch_size, workers, max_tokens, window, progress)
