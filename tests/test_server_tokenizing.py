"""The server's tokenizing stage: many requests per tokenizer call, each request's own encodings and errors."""

from __future__ import annotations

import asyncio
import os
import threading
import time

import numpy as np
import pytest

from vecsift.errors import EncodingError
from vecsift.server.protocol import ApiError, EmbedRequest
from vecsift.server.tokenizing import LARGE_REQUEST_CHARS, TokenizingStage, without_tokenizer_thread_pool
from vecsift.tokenizer import load_tokenizer

LIMIT = 32
VOCAB = 30522
SETTLED_SECONDS = 30  # a request the stage lost fails its test instead of hanging it
NUMBERS = " ".join(map(str, range(100)))  # more tokens than LIMIT, each cut different


@pytest.fixture(scope="module")
def tokenizer():
    return load_tokenizer()


class Recording:
    """The real tokenizer, recording how many texts each call got; the first call can be held until released,
    so that requests queue up behind it; ``fail_on`` raises the tokenizer's error for a call holding that text."""

    def __init__(self, tokenizer, hold_first: bool = False, fail_on: str | None = None) -> None:
        self.tokenizer = tokenizer
        self.calls: list[int] = []
        self.release = threading.Event()
        self.entered = threading.Event()
        if not hold_first:
            self.release.set()
        self.fail_on = fail_on

    def encode(self, texts, max_tokens=None, direction="right"):
        self.calls.append(len(texts))
        self.entered.set()
        self.release.wait(10)
        if self.fail_on is not None and self.fail_on in texts:
            raise EncodingError(f"cannot tokenize {self.fail_on!r}")
        return self.tokenizer.encode(texts, max_tokens=LIMIT, direction=direction)

    def count_tokens(self, texts):
        return self.tokenizer.count_tokens(texts)


def stage_of(tokenizer, workers: int = 1) -> TokenizingStage:
    stage = TokenizingStage(tokenizer, max_tokens=LIMIT, vocab_size=VOCAB, workers=workers)
    stage.start()
    return stage


def gather(stage: TokenizingStage, requests: list[EmbedRequest]) -> list:
    """Every request's encodings (or its exception), submitted together from one event loop."""
    async def main():
        futures = [stage.tokenize(r) for r in requests]
        return await asyncio.wait_for(asyncio.gather(*futures, return_exceptions=True), SETTLED_SECONDS)
    return asyncio.run(main())


def behind_a_held_call(stage: TokenizingStage, recording: Recording, requests: list[EmbedRequest],
                       first: EmbedRequest | None = None) -> list:
    """``first`` enters the tokenizer and is held there while ``requests`` queue up behind it; then the call
    is released and every result gathered (exceptions as results), ``first``'s first."""
    async def main():
        held = stage.tokenize(first or EmbedRequest(["warm up"]))
        await asyncio.to_thread(recording.entered.wait, 10)
        queued = [stage.tokenize(r) for r in requests]
        recording.release.set()
        return await asyncio.wait_for(asyncio.gather(held, *queued, return_exceptions=True), SETTLED_SECONDS)
    return asyncio.run(main())


def ids(encodings) -> list[list[int]]:
    return [e.input_ids.tolist() for e in encodings]


REQUESTS = [
    EmbedRequest(["retry a request with exponential backoff"]),
    EmbedRequest(["parse a configuration file", "", "ünïcödé 🙂"]),
    EmbedRequest([NUMBERS], direction="left"),
    EmbedRequest([NUMBERS]),
    EmbedRequest(["least recently used cache"], prompt="query: "),
    EmbedRequest([[101, 7592, 102], "mixed with text"]),
    EmbedRequest([list(range(1000, 1000 + 3 * LIMIT))], direction="left"),
]


def test_each_request_gets_its_own_encodings(tokenizer):
    stage = stage_of(tokenizer, workers=2)
    try:
        got = gather(stage, REQUESTS * 5)
    finally:
        stage.stop()
    for request, encodings in zip(REQUESTS * 5, got, strict=True):
        texts = [request.prompt + x for x in request.inputs if isinstance(x, str)]
        expected = iter(ids(tokenizer.encode(texts, max_tokens=LIMIT, direction=request.direction)))
        for item, encoding in zip(request.inputs, encodings, strict=True):
            want = next(expected) if isinstance(item, str) else (
                item[:LIMIT] if request.direction == "right" else item[-LIMIT:])
            assert encoding.input_ids.tolist() == want
            assert len(encoding) <= LIMIT
    left, right = got[2][0].input_ids.tolist(), got[3][0].input_ids.tolist()
    assert left != right and left[0] == right[0] == 101  # each keeps [CLS]; the cut is on its own side


def test_requests_queued_behind_a_call_share_the_next_one(tokenizer):
    recording = Recording(tokenizer, hold_first=True)
    stage = stage_of(recording)
    requests = [EmbedRequest([f"text number {n}"]) for n in range(20)]
    try:
        got = behind_a_held_call(stage, recording, requests[1:], first=requests[0])
    finally:
        stage.stop()
    assert recording.calls == [1, 19]
    assert [ids(e) for e in got] == [ids(tokenizer.encode(r.inputs, max_tokens=LIMIT)) for r in requests]


def test_a_bad_request_fails_alone(tokenizer):
    requests = [
        EmbedRequest(["fine"]),
        EmbedRequest(["word " * 100], truncate=False),  # more than the limit, and must not be cut
        EmbedRequest([[101, VOCAB + 5, 102]]),  # outside the vocabulary
        EmbedRequest([[-1]]),
        EmbedRequest([list(range(100, 100 + LIMIT + 1))], truncate=False),
        EmbedRequest(["also fine"], truncate=False),
    ]
    stage = stage_of(tokenizer)
    try:
        got = gather(stage, requests)
    finally:
        stage.stop()
    assert ids(got[0]) == ids(tokenizer.encode(["fine"], max_tokens=LIMIT))
    assert ids(got[5]) == ids(tokenizer.encode(["also fine"], max_tokens=LIMIT))
    for index, needle in ((1, "input 0 has 102 tokens"), (2, f"token id {VOCAB + 5}"), (3, "token id -1"),
                          (4, f"{LIMIT + 1} token ids")):
        assert isinstance(got[index], ApiError) and got[index].error_type == "Validation"
        assert needle in str(got[index])


def test_a_tokenizer_error_stays_with_its_request(tokenizer):
    recording = Recording(tokenizer, hold_first=True, fail_on="poison")
    stage = stage_of(recording)
    try:
        got = behind_a_held_call(stage, recording, [EmbedRequest([t]) for t in ("good one", "poison", "good two")])
    finally:
        stage.stop()
    assert isinstance(got[2], ApiError) and got[2].error_type == "Tokenizer" and "poison" in str(got[2])
    assert ids(got[1]) == ids(tokenizer.encode(["good one"], max_tokens=LIMIT))
    assert ids(got[3]) == ids(tokenizer.encode(["good two"], max_tokens=LIMIT))


def test_an_unexpected_error_reaches_the_request_and_the_worker_goes_on(tokenizer):
    class Broken(Recording):
        def encode(self, texts, max_tokens=None, direction="right"):
            if "crash" in texts:
                raise RuntimeError("tokenizer crashed")
            return super().encode(texts, max_tokens, direction)

    stage = stage_of(Broken(tokenizer))
    try:
        crashed = gather(stage, [EmbedRequest(["crash"])])[0]
        after = gather(stage, [EmbedRequest(["still here"])])[0]
    finally:
        stage.stop()
    assert isinstance(crashed, RuntimeError) and "crashed" in str(crashed)
    assert ids(after) == ids(tokenizer.encode(["still here"], max_tokens=LIMIT))


def test_a_large_request_gets_a_call_of_its_own_after_the_small_ones(tokenizer):
    recording = Recording(tokenizer, hold_first=True)
    stage = stage_of(recording)
    large = EmbedRequest(["x" * (LARGE_REQUEST_CHARS // 2), "y" * (LARGE_REQUEST_CHARS // 2 + 1)])
    small = [EmbedRequest(["small one"]), EmbedRequest(["small two"])]
    try:
        got = behind_a_held_call(stage, recording, [large, *small])
    finally:
        stage.stop()
    assert recording.calls == [1, 2, 2]  # the round's two small texts together, then the large request's two
    assert ids(got[1]) == ids(tokenizer.encode(large.inputs, max_tokens=LIMIT))
    assert [ids(g) for g in got[2:]] == [ids(tokenizer.encode(r.inputs, max_tokens=LIMIT)) for r in small]


def test_stop_finishes_what_is_queued_then_refuses(tokenizer):
    recording = Recording(tokenizer, hold_first=True)
    stage = stage_of(recording)

    async def main():
        futures = [stage.tokenize(EmbedRequest([f"queued {n}"])) for n in range(5)]
        await asyncio.to_thread(recording.entered.wait, 10)
        stopping = asyncio.create_task(asyncio.to_thread(stage.stop))
        await asyncio.sleep(0.05)
        recording.release.set()
        got = await asyncio.wait_for(asyncio.gather(*futures), SETTLED_SECONDS)
        await stopping
        with pytest.raises(ApiError, match="stopping"):
            stage.tokenize(EmbedRequest(["too late"]))
        return got

    got = asyncio.run(main())
    assert [ids(g) for g in got] == [ids(tokenizer.encode([f"queued {n}"], max_tokens=LIMIT)) for n in range(5)]
    assert all(np.all(e.attention_mask == 1) for g in got for e in g)


def test_a_stage_has_no_threads_until_started_and_refuses_until_then(tokenizer):
    def workers() -> set[threading.Thread]:
        return {t for t in threading.enumerate() if t.name.startswith("vecsift-tokenize") and t.is_alive()}

    before = workers()
    stage = TokenizingStage(tokenizer, max_tokens=LIMIT, vocab_size=VOCAB, workers=2)

    async def early():
        stage.tokenize(EmbedRequest(["too early"]))

    with pytest.raises(ApiError, match="not ready") as refused:
        asyncio.run(early())
    assert refused.value.error_type == "Unhealthy" and workers() == before
    stage.start()
    stage.start()  # once
    assert len(workers() - before) == 2
    stage.stop()
    assert workers() <= before


@pytest.mark.parametrize("workers", [1, 2])
def test_requests_queued_in_one_loop_iteration_wake_a_worker_once_and_share_its_call(tokenizer, workers) -> None:
    recording = Recording(tokenizer)
    stage = stage_of(recording, workers=workers)
    try:
        requests = [EmbedRequest([f"request {n}"]) for n in range(20)]
        deadline = time.monotonic() + SETTLED_SECONDS
        while len(stage._wake._waiters) < workers:  # every worker started and asleep, none awake by chance
            assert time.monotonic() < deadline
            time.sleep(0.001)

        async def main() -> list:
            futures = []
            for request in requests:  # one loop iteration, the GIL free between requests (as between reads)
                futures.append(stage.tokenize(request))
                time.sleep(0.002)
            return await asyncio.wait_for(asyncio.gather(*futures), SETTLED_SECONDS)

        results = asyncio.run(main())
    finally:
        stage.stop()
    assert recording.calls == [20]  # no worker was woken while the loop was still queueing
    assert ids(r[0] for r in results) == ids(tokenizer.encode([r.inputs[0] for r in requests], max_tokens=LIMIT))


def test_a_loop_gone_before_its_wake_up_does_not_strand_the_next_loops_requests(tokenizer) -> None:
    stage = stage_of(tokenizer)
    stale = asyncio.new_event_loop()
    try:
        def queue_and_stop() -> None:
            stage.tokenize(EmbedRequest(["nobody waits for this"]))  # its wake-up is due next iteration...
            stale.stop()  # ...which never comes

        stale.call_soon(queue_and_stop)
        stale.run_forever()
        stale.close()
        assert stage._kick_loop is stale  # the scenario: a wake-up owed by a loop that is gone
        assert gather(stage, [EmbedRequest(["asked later"])])[0][0] is not None
    finally:
        stale.close()
        stage.stop()


def test_a_serving_process_tokenizes_without_the_librarys_pool_unless_the_user_chose(monkeypatch, tokenizer) -> None:
    monkeypatch.setenv("TOKENIZERS_PARALLELISM", "recorded")  # so that the test's own setting is undone
    monkeypatch.delenv("TOKENIZERS_PARALLELISM")
    without_tokenizer_thread_pool()
    assert os.environ["TOKENIZERS_PARALLELISM"] == "false"
    assert tokenizer.encode(["still tokenizes"])[0].input_ids.size > 2
    monkeypatch.setenv("TOKENIZERS_PARALLELISM", "true")
    without_tokenizer_thread_pool()
    assert os.environ["TOKENIZERS_PARALLELISM"] == "true"
