"""embed_stream and the ring pipeline: bounded memory, order, overlap, failures, shutdown."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from fakes import FakeBackend, resident_bytes
from vecsift import RING_SIZE, Encoding, GenericBackend, embed_distributed, embed_stream
from vecsift.backend.driver.numpy_driver import NumpyDriver
from vecsift.backend.token_batch import PackBuffers, TokenBatch
from vecsift.errors import BackendError, EncodingError, UsageError

#: how long a wait may last before it counts as a hang (a guard, not a timing assertion: only a thread that
#: never stops, or an event that never comes, exceeds it on a loaded machine)
HANG_GUARD = 60.0


def vecsift_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith(("vecsift", "backend")) and t.is_alive()]


def threads_end() -> bool:
    """Whether every thread a stream started has ended (waiting up to the hang guard)."""
    deadline = time.monotonic() + HANG_GUARD
    while vecsift_threads() and time.monotonic() < deadline:
        time.sleep(0.02)
    return not vecsift_threads()


def varied(n: int, seed: int = 0) -> list[str]:
    rng = np.random.default_rng(seed)
    return [" ".join(f"w{i}x{j}" for j in range(int(rng.integers(1, 60)))) for i in range(n)]


def test_memory_stays_bounded_over_100k_texts(tokenizer):
    backend = FakeBackend(dim=16, gpu=True)
    stream = embed_stream((f"text number {i}" for i in range(100_000)), [backend], tokenizer, batch_size=32)
    assert stream.bound == (RING_SIZE + 2) * 32 + 4 * 32
    count, resident_at_10k = 0, 0
    for _vector in stream:
        count += 1
        if count == 10_000:
            resident_at_10k = resident_bytes()
        assert stream.pulled - stream.yielded <= stream.bound
    assert count == 100_000 and stream.yielded == 100_000
    assert 0 < stream.max_in_flight <= stream.bound
    assert resident_bytes() - resident_at_10k < 32 * 2**20  # no growth with the corpus
    assert not vecsift_threads()


@pytest.mark.parametrize("backends", [
    lambda: [FakeBackend(gpu=True)],
    lambda: [FakeBackend()],
    lambda: [FakeBackend(gpu=True, delay=0.002), FakeBackend(delay=0.01), FakeBackend(delay=0.001)],
])
def test_order_matches_unscheduled_results(tokenizer, backends):
    texts = varied(600, seed=3)
    expected = np.concatenate([FakeBackend().embed_batch([e]) for e in tokenizer.encode(texts)])
    got = np.stack(list(embed_stream(iter(texts), backends(), tokenizer, batch_size=8, workers=2)))
    np.testing.assert_array_equal(got, expected)


def test_real_backend_stream_equals_batch_path(backend, tokenizer):
    texts = varied(90, seed=4)
    streamed = np.stack(list(embed_stream(texts, [backend], tokenizer, batch_size=8)))
    # Windows sort differently from the global sort, so batches (and float rounding) differ slightly.
    batch = embed_distributed(tokenizer.encode(texts), [backend], batch_size=8)
    np.testing.assert_allclose(streamed, batch, atol=1e-6)


def test_first_batch_is_embedded_before_the_input_ends(tokenizer):
    first_vector = threading.Event()

    def texts():
        yield from (f"early {i}" for i in range(100))
        if not first_vector.wait(timeout=HANG_GUARD):
            raise AssertionError("nothing was embedded before the input ended")
        yield from (f"late {i}" for i in range(100))

    stream = embed_stream(texts(), [FakeBackend(gpu=True)], tokenizer, batch_size=16)
    vectors = []
    for vector in stream:
        first_vector.set()
        vectors.append(vector)
    assert len(vectors) == 200


class RecordingGpu(FakeBackend):
    """A slow fake GPU that logs when batches are prepared and embedded."""

    def __init__(self):
        super().__init__(gpu=True, delay=0.02)
        self.events: list[tuple[str, int]] = []
        self.lock = threading.Lock()
        self.prepared = self.started = 0

    def prepare_batch(self, encodings, slot=None):
        with self.lock:
            self.events.append(("prepared", self.prepared))
            self.prepared += 1
        return list(encodings)

    def embed_prepared(self, prepared):
        with self.lock:
            self.events.append(("start", self.started))
            self.started += 1
        out = self.embed_batch(prepared)
        with self.lock:
            self.events.append(("end", self.started - 1))
        return out


def test_the_producer_works_ahead_of_the_gpu_within_the_ring(tokenizer):
    gpu = RecordingGpu()
    embed_distributed(tokenizer.encode(varied(400, seed=5)), [gpu], batch_size=4)
    events = gpu.events
    position = {event: i for i, event in enumerate(events)}
    batches = gpu.started
    assert batches == -(-400 // (4 * 4))  # the GPU claims 4 units of 4 at a time
    # While the GPU ran batch k, batch k+1 was already prepared: the GPU never waited on host work.
    assert all(position[("prepared", k + 1)] < position[("end", k)] for k in range(batches - 1))
    # And never more than RING_SIZE batches were prepared ahead of those finished.
    in_flight = finished = prepared = 0
    for kind, _ in events:
        prepared += kind == "prepared"
        finished += kind == "end"
        in_flight = max(in_flight, prepared - finished)
    assert in_flight <= RING_SIZE


def test_ring_buffers_are_reused():
    buffers = PackBuffers()
    big = TokenBatch.from_encodings([Encoding.from_ids(np.arange(1, 50))] * 3, buffers)
    storage = buffers.tokens
    small = TokenBatch.from_encodings([Encoding.from_ids(np.arange(1, 10))] * 2, buffers)
    assert buffers.tokens is storage and np.shares_memory(small.input_ids, big.input_ids)
    assert small.cu_seqlens.tolist() == [0, 9, 18] and small.position_ids[9] == 0


def test_gpu_flagged_generic_backend_goes_through_the_ring(backend, tokenizer):
    gpu_like = GenericBackend(NumpyDriver(), backend.arch, True, backend.weights)
    texts = varied(50, seed=6)
    np.testing.assert_allclose(
        np.stack(list(embed_stream(texts, [gpu_like], tokenizer, batch_size=4))),
        backend.embed_batch(tokenizer.encode(texts)), atol=1e-6,
    )


class ExplodingTokenizer:
    pass


def failing_inputs():
    def reader():
        yield from (f"t{i}" for i in range(50))
        raise OSError("disk went away")

    return reader()


@pytest.mark.parametrize(
    ("make_texts", "make_backends", "error", "stage"),
    [
        (failing_inputs, lambda: [FakeBackend(gpu=True)], BackendError, "reading the input"),
        (lambda: ["ok"] * 40 + [b"bytes"], lambda: [FakeBackend()], EncodingError, "reading the input"),
        (lambda: (f"t{i}" for i in range(500)), lambda: [FakeBackend(gpu=True, fail_on_id=101)], BackendError,
         "backend 0"),
        (lambda: (f"t{i}" for i in range(500)), lambda: [FakeBackend(fail_on_id=101, delay=0.001)], BackendError,
         "worker"),
    ],
)
def test_failures_end_the_run_quickly_with_their_cause(tokenizer, make_texts, make_backends, error, stage):
    with pytest.raises(error, match=stage) as info:
        for _ in embed_stream(make_texts(), make_backends(), tokenizer, batch_size=4):
            pass
    assert info.value.__cause__ is not None
    assert threads_end()


def test_tokenizer_failure(tokenizer, monkeypatch):
    def broken(texts, max_tokens=None):
        raise RuntimeError("tokenizer crashed")

    monkeypatch.setattr(tokenizer, "encode", broken)
    with pytest.raises(BackendError, match="tokenizer failed: tokenizer crashed"):
        list(embed_stream(["a", "b"], [FakeBackend()], tokenizer))
    assert not vecsift_threads()


def test_preparation_failure_on_the_producer_thread(tokenizer):
    class BadPrepare(FakeBackend):
        def prepare_batch(self, encodings, slot=None):
            raise MemoryError("pinned memory exhausted")

    with pytest.raises(BackendError, match="batch preparation failed: pinned memory exhausted"):
        list(embed_stream(varied(40), [BadPrepare(gpu=True)], tokenizer, batch_size=4))
    assert not vecsift_threads()


def test_consumer_stopping_early_or_failing_ends_every_thread(tokenizer):
    stream = embed_stream((f"t{i}" for i in range(10**9)), [FakeBackend(gpu=True)], tokenizer, batch_size=8)
    with pytest.raises(ZeroDivisionError):  # e.g. the writer failed
        for n, _ in enumerate(stream):
            if n == 50:
                raise ZeroDivisionError
    stream.close()
    assert threads_end()


def test_ctrl_c_in_the_input_stops_everything(tokenizer):
    def interrupted():
        yield from (f"t{i}" for i in range(30))
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        list(embed_stream(interrupted(), [FakeBackend()], tokenizer, batch_size=4))
    assert threads_end()


def test_progress_counts_texts(tokenizer):
    seen = []
    stream = embed_stream(varied(37), [FakeBackend()], tokenizer, batch_size=5, progress=seen.append)
    assert len(list(stream)) == 37 and sum(seen) == 37 and stream.tokens > 37


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"window": 0}, "window must be a positive integer"),
    ({"batch_size": -1}, "batch_size must be a positive integer"),
    ({"tokenizer": ExplodingTokenizer()}, "must be a vecsift Tokenizer"),
    ({"max_tokens": 1}, "max_tokens must be an integer"),
])
def test_bad_stream_arguments(tokenizer, kwargs, message):
    arguments = {"texts": ["x"], "backends": [FakeBackend()], "tokenizer": tokenizer, **kwargs}
    with pytest.raises((UsageError, EncodingError), match=message):
        embed_stream(**arguments)


def test_empty_stream(tokenizer):
    assert list(embed_stream([], [FakeBackend()], tokenizer)) == []


@pytest.mark.skipif("not __import__('torch').cuda.is_available()", reason="no CUDA device on this machine")
def test_real_cuda_backend_streams_in_order(tokenizer):
    from vecsift import load_backend

    cuda = load_backend(kind="cuda")
    texts = varied(300, seed=7)
    reference = load_backend(driver="numpy").embed_batch(tokenizer.encode(texts))
    got = np.stack(list(embed_stream(texts, [cuda], tokenizer, batch_size=16)))
    assert (got * reference).sum(axis=1).min() > 0.999


@pytest.mark.parametrize("gpu", [False, True])
def test_breaking_out_and_dropping_a_stream_stops_its_threads(tokenizer, gpu):
    """`for v in embed_stream(...): break` then losing the stream must not leave threads polling."""
    import gc

    for _ in range(3):
        stream = embed_stream((f"t{i}" for i in range(10**9)), [FakeBackend(gpu=gpu)], tokenizer, batch_size=8)
        for _vector in stream:
            break
        assert vecsift_threads()  # running while the stream is alive
        del stream
    gc.collect()
    assert threads_end()
