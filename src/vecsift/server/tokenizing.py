"""The tokenizing stage of `vecsift serve`: requests are tokenized off the event loop, many in one call.

Tokenizing a short text on a busy event loop cost ~60 µs there, 2.5× the same call in a tight loop (the
HTTP work between two requests leaves the tokenizer's tables cold), a quarter of the loop's time per
single-text request. Here worker threads (TEI's ``--tokenization-workers``) each take every request queued
since their last round, tokenize the round's texts in one call per truncation direction, and settle the
round's requests with one hop back to the event loop. A large request (or one that must not be truncated)
is tokenized on its own after the round's small ones are settled, so that it does not hold them up.

Measured (2 cores, 64 single-text clients): the server process's CPU per request 232 → 206 µs, texts/s
unchanged (the cores bound them there, not the loop); with an instant model the event loop answers 4.4–4.7k
requests/s against 3.8–4.1k, the cap of a server on more cores or a GPU.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import threading
from collections import defaultdict, deque
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from vecsift.encoding import Encoding
from vecsift.errors import EncodingError
from vecsift.server.protocol import ApiError, EmbedRequest
from vecsift.tokenizer import Tokenizer

#: requests with more characters of text than this are tokenized in a call of their own
LARGE_REQUEST_CHARS = 4096


def without_tokenizer_thread_pool() -> None:
    """Have the tokenizers library tokenize on the calling thread in this process, unless the user set
    ``TOKENIZERS_PARALLELISM`` (call in a serving process).

    The stage's workers are the parallelism here; the library's own pool on top of them spun on the cores the
    lanes compute on (~0.75 involuntary context switches per request). Alternating, 64 single-text clients,
    two runs of 4 and 3 rounds: texts/s 1,421 against 1,300 and 1,396 against 1,319, the server process 173
    against 185 µs per request, the lanes 1.11–1.14 against 1.17–1.19 ms per text, one client p50 the same."""
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")  # read by the library at each call


@dataclass
class _Waiting:
    request: EmbedRequest
    future: asyncio.Future
    loop: asyncio.AbstractEventLoop


class TokenizingStage:
    """Worker threads that turn requests into encodings; :meth:`tokenize` is called on the event loop."""

    def __init__(self, tokenizer: Tokenizer, *, max_tokens: int, vocab_size: int | None, workers: int) -> None:
        self.tokenizer = tokenizer
        self.max_tokens = max_tokens
        self.vocab_size = vocab_size
        self.worker_count = max(1, workers)
        self._queue: deque[_Waiting] = deque()
        self._wake = threading.Condition()
        self._stopping = False
        self._workers: list[threading.Thread] = []
        self._kick_loop: asyncio.AbstractEventLoop | None = None  # a loop whose wake-up of a worker is due

    def start(self) -> None:
        """Start the workers (once; with the server's lanes, so that an app that never starts has none)."""
        with self._wake:
            if self._workers or self._stopping:
                return
            self._workers = [threading.Thread(target=self._run, name=f"vecsift-tokenize-{n}", daemon=True)
                             for n in range(self.worker_count)]
            for worker in self._workers:
                worker.start()

    def tokenize(self, request: EmbedRequest) -> asyncio.Future[list[Encoding]]:
        """A future of ``request``'s encodings (or of its :class:`ApiError`), settled on the running loop."""
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        with self._wake:
            if self._stopping or not self._workers:
                raise ApiError("Unhealthy", "the server is stopping" if self._stopping else "the server is not ready")
            self._queue.append(_Waiting(request, future, loop))
            if self._kick_loop is not loop:  # one wake-up per loop iteration, however many requests it parsed
                self._kick_loop = loop
                loop.call_soon(self._kick)
        return future

    def _kick(self) -> None:
        """Wake a worker for what the loop queued in its last iteration (on the loop).

        Waking a worker per request switched threads on the loop's core for most requests (the woken worker
        takes the core while the loop still holds the GIL); 64 single-text clients, alternating: the server
        process's CPU per request 193 → 188 µs, texts/s the same within noise."""
        with self._wake:
            self._kick_loop = None
            self._wake.notify()

    def stop(self, timeout: float = 30.0) -> None:
        """Tokenize what is queued, then end the workers."""
        with self._wake:
            self._stopping = True
            self._wake.notify_all()
        for worker in self._workers:
            worker.join(timeout)

    def encodings(self, request: EmbedRequest, texts_encoded: Sequence[Encoding] | None = None) -> list[Encoding]:
        """Encodings for every input of ``request`` (texts with the prompt, token ids as given), truncated or
        refused; ``texts_encoded``: its texts' encodings, already made (truncated), in order."""
        limit = self.max_tokens
        if texts_encoded is None:
            texts = _texts(request)
            if not request.truncate:
                for count, i in zip(self.tokenizer.count_tokens(texts), _text_positions(request), strict=True):
                    if count > limit:
                        raise ApiError("Validation", f"input {i} has {count} tokens, more than the model's limit "
                                                     f"of {limit}; shorten it or send \"truncate\": true")
            texts_encoded = self._encode(texts, request.direction) if texts else []
        encoded = iter(texts_encoded)
        out: list[Encoding] = []
        for i, item in enumerate(request.inputs):
            if isinstance(item, str):
                out.append(next(encoded))
                continue
            if len(item) > limit:
                if not request.truncate:
                    raise ApiError("Validation", f"input {i} has {len(item)} token ids, more than the model's limit "
                                                 f"of {limit}; send fewer or \"truncate\": true")
                item = item[:limit] if request.direction == "right" else item[-limit:]
            bad = [t for t in item if t < 0 or (self.vocab_size is not None and t >= self.vocab_size)]
            if bad:
                raise ApiError("Validation", f"input {i} holds token id {bad[0]}, outside the vocabulary of size "
                                             f"{self.vocab_size}")
            out.append(Encoding.from_ids(np.asarray(item, dtype=np.int64)))
        return out

    def _encode(self, texts: list[str], direction: str) -> list[Encoding]:
        try:
            return self.tokenizer.encode(texts, max_tokens=self.max_tokens, direction=direction)
        except EncodingError as err:
            raise ApiError("Tokenizer", str(err)) from err

    def _run(self) -> None:
        while True:
            with self._wake:
                while not self._queue and not self._stopping:
                    self._wake.wait()
                if not self._queue:
                    return
                round_ = list(self._queue)
                self._queue.clear()
            try:
                self._round(round_)
            except Exception as err:  # never leave a request waiting, nor the worker dead
                _settle([(waiting, None, err) for waiting in round_])

    def _round(self, round_: list[_Waiting]) -> None:
        by_direction: dict[str, list[_Waiting]] = defaultdict(list)  # small requests, tokenized together
        alone: list[_Waiting] = []
        for waiting in round_:
            if waiting.request.truncate and _chars(waiting.request) <= LARGE_REQUEST_CHARS:
                by_direction[waiting.request.direction].append(waiting)
            else:
                alone.append(waiting)
        _settle([result for direction, group in by_direction.items() for result in self._together(group, direction)])
        for waiting in alone:
            _settle([self._alone(waiting)])

    def _together(self, group: list[_Waiting], direction: str) -> list[tuple]:
        """The group's texts in one call, then each request's encodings (errors stay with their request)."""
        per_request = [_texts(waiting.request) for waiting in group]
        texts = [text for request_texts in per_request for text in request_texts]
        try:
            encoded = self._encode(texts, direction) if texts else []
        except ApiError:  # one request's text: find whose, each on its own
            return [self._alone(waiting) for waiting in group]
        results = []
        start = 0
        for waiting, request_texts in zip(group, per_request, strict=True):
            count = len(request_texts)
            try:
                results.append((waiting, self.encodings(waiting.request, encoded[start:start + count]), None))
            except ApiError as err:
                results.append((waiting, None, err))
            start += count
        return results

    def _alone(self, waiting: _Waiting) -> tuple:
        try:
            return waiting, self.encodings(waiting.request), None
        except ApiError as err:
            return waiting, None, err


def _chars(request: EmbedRequest) -> int:
    return sum(len(x) for x in request.inputs if isinstance(x, str))


def _texts(request: EmbedRequest) -> list[str]:
    """The request's texts as the model reads them (with its prompt), in order; token-id inputs left out."""
    return [request.prompt + x for x in request.inputs if isinstance(x, str)]


def _text_positions(request: EmbedRequest) -> list[int]:
    return [i for i, x in enumerate(request.inputs) if isinstance(x, str)]


def _settle(results: list[tuple]) -> None:
    """Hand results to their event loops: one hop per loop, whatever the number of requests."""
    by_loop: dict[asyncio.AbstractEventLoop, list[tuple]] = defaultdict(list)
    for waiting, value, error in results:
        by_loop[waiting.loop].append((waiting.future, value, error))
    for loop, settled in by_loop.items():
        with contextlib.suppress(RuntimeError):  # a closed loop: nobody waits for these any more
            loop.call_soon_threadsafe(_resolve, settled)


def _resolve(settled: list[tuple]) -> None:
    for future, value, error in settled:
        if future.done():  # cancelled (the server stops), or settled by an earlier hop
            continue
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(value)
