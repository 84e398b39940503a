"""`embed_stream`: embed an iterable of texts lazily, yielding vectors in input order.

Stages, each on its own thread, connected by bounded hand-offs:

    texts ──reader + tokenizer──▶ WorkQueue ──workers (CPU clones, GPU rings)──▶ results ──▶ caller

Memory is bounded by a permit per text: the reader takes one before pulling a
text and the caller's iteration gives it back when that text's vector is
yielded. So texts pulled but not yet yielded never exceed ``bound`` =
``(RING_SIZE + 2) × batch_size + window``, whatever the corpus size; ``window``
(default ``4 × batch_size``) is how many texts are tokenized and length-sorted
together. The reader flushes a partial window before it waits for a permit,
so the pipeline cannot stall on its own input.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterable, Iterator, Sequence

import numpy as np

from vecsift.backend.contract import EmbedBackend
from vecsift.errors import BackendError, EncodingError, UsageError
from vecsift.scheduling.distributed import JOIN_GRACE, check_arguments, single_threaded_kernels
from vecsift.scheduling.progress import Progress, ProgressCallback
from vecsift.scheduling.run_state import RunState
from vecsift.scheduling.work_queue import WorkQueue, length_sorted_units
from vecsift.scheduling.workers import POLL_SECONDS, RING_SIZE, make_workers
from vecsift.tokenizer import Tokenizer


class EmbeddingStream(Iterator[np.ndarray]):
    """Iterator of ``(dim,)`` float32 unit vectors, one per input text, in order.

    ``pulled``, ``yielded``, ``max_in_flight`` (the most texts ever pulled but not
    yet yielded) and ``tokens`` tell how far it got. Closing it early (or an
    error in any stage) stops every thread.
    """

    def __init__(self, texts: Iterable[str], backends: list[EmbedBackend], tokenizer: Tokenizer, batch_size: int,
                 workers: int, max_tokens: int | None, window: int, progress: bool | ProgressCallback) -> None:
        self.bound = (RING_SIZE + 2) * batch_size + window
        self.pulled = self.yielded = self.max_in_flight = 0
        self._texts, self._backends, self._tokenizer = texts, backends, tokenizer
        self._batch_size, self._workers, self._max_tokens, self._window = batch_size, workers, max_tokens, window
        self._progress = progress
        self._counts = threading.Lock()
        self._permits = threading.Semaphore(self.bound)
        self._state = RunState()
        self._work = WorkQueue()
        self._results: queue.Queue[tuple[np.ndarray, np.ndarray]] = queue.Queue()
        self._threads: list[threading.Thread] = []
        self._meter: Progress | None = None
        self._iterator = self._collect()

    @property
    def tokens(self) -> int:
        return self._meter.tokens if self._meter else 0

    def __iter__(self) -> EmbeddingStream:
        return self

    def __next__(self) -> np.ndarray:
        return next(self._iterator)

    def close(self) -> None:
        """Stop every stage now; vectors not yet yielded are dropped."""
        self._iterator.close()

    def __enter__(self) -> EmbeddingStream:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- stages ---------------------------------------------------------------------------
    def _read(self) -> None:
        """Pull texts (one permit each), tokenize and length-sort them by window, queue the units."""
        stage, pending = "reading the input", []

        def flush() -> None:
            nonlocal stage
            if pending:
                stage = "tokenizer"
                first = self.pulled - len(pending)
                encodings = self._tokenizer.encode(pending, max_tokens=self._max_tokens)
                for unit in length_sorted_units(encodings, self._batch_size, first_index=first):
                    self._work.put(unit)
                pending.clear()
                stage = "reading the input"

        try:
            for text in self._texts:
                if self._state.stopped.is_set():
                    return
                if not isinstance(text, str):
                    raise EncodingError(f"text {self.pulled} is a {type(text).__name__}, not a str")
                if not self._permits.acquire(blocking=False):
                    flush()
                    while not self._permits.acquire(timeout=POLL_SECONDS):
                        if self._state.stopped.is_set():
                            return
                with self._counts:
                    self.pulled += 1
                    self.max_in_flight = max(self.max_in_flight, self.pulled - self.yielded)
                pending.append(text)
                if len(pending) >= self._window:
                    flush()
            flush()
        except BaseException as err:
            self._state.fail(stage, err)
        finally:
            self._work.close()

    def _sink(self, indices: np.ndarray, vectors: np.ndarray, tokens: int) -> None:
        self._results.put((indices, vectors))
        assert self._meter is not None
        self._meter.update(len(indices), tokens)

    def _start(self) -> None:
        total = len(self._texts) if isinstance(self._texts, Sequence) else None
        self._meter = Progress(self._progress, total)
        self._texts = iter(self._texts)
        drivers = make_workers(self._backends, self._workers, self._work, self._state, self._sink)
        self._threads = [threading.Thread(target=self._read, name="vecsift reader", daemon=True)]
        self._threads += [threading.Thread(target=w.run, name=w.label, daemon=True) for w in drivers]
        for thread in self._threads:
            thread.start()

    def _collect(self) -> Iterator[np.ndarray]:
        limits = single_threaded_kernels(self._backends)
        limits.__enter__()
        self._start()
        ready: dict[int, np.ndarray] = {}
        try:
            while True:
                try:
                    indices, vectors = self._results.get(timeout=POLL_SECONDS)
                except queue.Empty:
                    if self._state.error is not None:
                        break
                    if any(t.is_alive() for t in self._threads) or not self._results.empty():
                        continue
                    break  # every stage finished and every result was collected
                ready.update(zip(indices.tolist(), vectors, strict=True))
                while self.yielded in ready:
                    vector = ready.pop(self.yielded)
                    with self._counts:
                        self.yielded += 1
                    self._permits.release()
                    yield vector
            self._state.raise_error()
            if ready or self.yielded != self.pulled:
                raise BackendError(f"stream ended with {self.pulled - self.yielded} texts not embedded")
        finally:
            self._state.stop()
            for thread in self._threads:
                thread.join(timeout=JOIN_GRACE / len(self._threads))
            if self._meter is not None:
                self._meter.close()
            limits.__exit__(None, None, None)


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
    if isinstance(window, bool) or not isinstance(window, int) or window < 1:
        raise UsageError(f"window must be a positive integer, got {window!r}")
    if not isinstance(tokenizer, Tokenizer):
        raise UsageError(f"tokenizer must be a vecsift Tokenizer (load_tokenizer), got {type(tokenizer).__name__}")
    tokenizer.limit_for(max_tokens)  # a bad max_tokens fails here, not in a thread
    return EmbeddingStream(texts, backends, tokenizer, batch_size, workers, max_tokens, window, progress)
