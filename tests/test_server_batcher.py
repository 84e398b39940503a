"""The server's batcher and its failure paths, in process with fake backends (no model, no sockets)."""

from __future__ import annotations

import asyncio
import threading
import time

import numpy as np
import pytest

pytest.importorskip("starlette")
from starlette.testclient import TestClient

from fakes import FakeBackend, encodings_of_lengths
from vecsift import Embedder
from vecsift.server.app import ServerSettings, create_app
from vecsift.server.batcher import Batcher, Job


class Recorder:
    """Collects what the batcher delivers to each job."""

    def __init__(self) -> None:
        self.results: dict[int, tuple] = {}
        self.done = threading.Event()
        self.expected = 0

    def job(self, key: int, encodings, normalize: bool = True) -> Job:
        self.expected += 1

        def deliver(rows, error, queue_seconds, inference_seconds):
            self.results[key] = (rows, error, queue_seconds, inference_seconds)
            if len(self.results) == self.expected:
                self.done.set()

        return Job(list(encodings), normalize, deliver)


def test_batches_respect_the_token_budget_and_arrival_order():
    backend = FakeBackend(dim=4)
    batches: list[tuple[int, int]] = []
    batcher = Batcher([backend], max_batch_tokens=100, batch_size=8, workers=1,
                      on_batch=lambda stats: batches.append((stats.inputs, stats.tokens)))
    recorder = Recorder()
    order: list[int] = []
    try:
        big = recorder.job(1, encodings_of_lengths([30] * 10))  # 300 tokens: sliced over batches
        small = recorder.job(2, encodings_of_lengths([10, 10], offset=5000))
        for key, job in ((1, big), (2, small)):
            deliver = job.deliver
            job.deliver = lambda *a, key=key, deliver=deliver: (order.append(key), deliver(*a))
        with batcher._wake:  # both queued before the thread looks
            batcher._queue.extend([big, small])
            batcher._wake.notify()
        assert recorder.done.wait(30)
    finally:
        batcher.stop()
    assert all(tokens <= 100 for _, tokens in batches) and sum(n for n, _ in batches) == 12
    assert order == [2, 1]  # the small request behind the big one was not held up until the big one ended
    assert batches[1] == (4, 80)  # the second batch: the small request's 2 inputs first, then 2 more of the big one
    expected_big = backend.embed_batch(encodings_of_lengths([30] * 10))
    np.testing.assert_allclose(recorder.results[1][0], expected_big, atol=1e-6)
    np.testing.assert_allclose(recorder.results[2][0], backend.embed_batch(encodings_of_lengths([10, 10], 5000)))


def test_a_cancelled_job_is_never_computed():
    backend = FakeBackend(dim=4, delay=0.3)
    batcher = Batcher([backend], max_batch_tokens=1000, batch_size=8, workers=1)
    recorder = Recorder()
    try:
        first = recorder.job(1, encodings_of_lengths([5]))
        gone = recorder.job(2, encodings_of_lengths([7], offset=9000))
        batcher.submit(first)
        time.sleep(0.1)  # the first batch is computing
        gone.cancelled = True  # its client went away while it waited
        batcher.submit(gone)
        recorder.expected = 1
        assert recorder.done.wait(30)
    finally:
        batcher.stop()
    assert 2 not in recorder.results
    assert sum(size for _, size in backend.calls) == 1  # only the first job's input was embedded


def test_unnormalized_and_normalized_jobs_never_share_a_batch(tokenizer):
    from vecsift import load_backend

    backend = load_backend("cpu", "all-MiniLM-L6-v2", driver="numpy")
    batcher = Batcher([backend], max_batch_tokens=10_000, batch_size=8, workers=1)
    recorder = Recorder()
    encodings = tokenizer.encode(["retry with backoff", "parse a config file"])
    try:
        batcher.submit(recorder.job(1, encodings, normalize=True))
        batcher.submit(recorder.job(2, encodings, normalize=False))
        assert recorder.done.wait(60)
    finally:
        batcher.stop()
    unit, raw = recorder.results[1][0], recorder.results[2][0]
    assert np.allclose(np.linalg.norm(unit, axis=1), 1, atol=1e-5)
    assert not np.allclose(np.linalg.norm(raw, axis=1), 1, atol=1e-3)
    np.testing.assert_allclose(raw / np.linalg.norm(raw, axis=1, keepdims=True), unit, atol=1e-5)


class MeetingBackend(FakeBackend):
    """Each batch waits at a barrier for a batch on another lane: only lanes computing side by side pass."""

    def __init__(self, barrier: threading.Barrier) -> None:
        super().__init__(dim=4)
        self.barrier = barrier

    def embed_batch(self, encodings):
        self.barrier.wait(timeout=30)
        return super().embed_batch(encodings)

    def clone_backend(self) -> MeetingBackend:
        self.clones += 1
        clone = MeetingBackend(self.barrier)
        clone.calls = self.calls
        return clone


def test_cpu_lanes_compute_side_by_side_and_split_a_burst():
    """Two CPU lanes, each on its own clone: a burst that arrives while both are idle is split between them
    (each takes its share), both compute at once (they meet at a barrier), and the rows are reassembled."""
    backend = MeetingBackend(threading.Barrier(2))
    batcher = Batcher([backend], max_batch_tokens=10_000, batch_size=8, workers=2)
    recorder = Recorder()
    try:
        assert batcher.lanes == 2 and backend.clones == 1
        for _ in range(3000):  # until both lanes wait for work
            if batcher._idle_lanes == 2:
                break
            time.sleep(0.01)
        with batcher._wake:  # queued while both wait
            batcher._queue.extend([recorder.job(1, encodings_of_lengths([5] * 6)),
                                   recorder.job(2, encodings_of_lengths([7] * 2, offset=7000))])
            batcher._arrived += 8
            batcher._wake.notify_all()
        assert recorder.done.wait(60)
    finally:
        batcher.stop()
    assert sorted(size for _, size in backend.calls) == [4, 4]  # 8 inputs, half each
    assert len({thread for thread, _ in backend.calls}) == 2 and not backend.barrier.broken
    assert all(error is None for _, error, _, _ in recorder.results.values())
    plain = FakeBackend(dim=4)  # the same rows, without the barrier
    np.testing.assert_allclose(recorder.results[1][0], plain.embed_batch(encodings_of_lengths([5] * 6)))
    np.testing.assert_allclose(recorder.results[2][0], plain.embed_batch(encodings_of_lengths([7] * 2, 7000)))


def test_a_failed_slice_fails_its_request_once_across_lanes():
    """A request split between two lanes whose one slice fails gets one error answer, and the lanes go on."""
    backend = FakeBackend(dim=4, delay=0.1, fail_on_id=1003)
    batcher = Batcher([backend], max_batch_tokens=10_000, batch_size=8, workers=2)
    answers: list[tuple] = []
    done = threading.Event()

    def deliver(rows, error, queue_seconds, inference_seconds):
        answers.append((rows, error))
        done.set()

    try:
        for _ in range(3000):  # until both lanes wait for work
            if batcher._idle_lanes == 2:
                break
            time.sleep(0.01)
        with batcher._wake:
            batcher._queue.append(Job(encodings_of_lengths([5] * 8), True, deliver))  # ids 1003… in slice 1
            batcher._arrived += 8
            batcher._wake.notify_all()
        assert done.wait(30)
        time.sleep(0.3)  # the other lane's slice ends too
        recorder = Recorder()
        batcher.submit(recorder.job(1, encodings_of_lengths([5], offset=5000)))
        assert recorder.done.wait(30) and recorder.results[1][1] is None
    finally:
        batcher.stop()
    assert len(answers) == 1 and answers[0][0] is None and "injected failure" in str(answers[0][1])
    assert batcher.failure is None


def test_lanes_stop_and_a_dead_lane_is_unhealthy():
    backend = FakeBackend(dim=4)
    batcher = Batcher([backend], max_batch_tokens=1000, batch_size=8, workers=3)
    assert batcher.lanes == 3 and batcher.healthy()
    batcher.stop()
    assert not batcher.healthy()  # every lane ended
    gpu = Batcher([FakeBackend(dim=4, gpu=True)], max_batch_tokens=1000, batch_size=8, workers=3)
    try:
        assert gpu.lanes == 1  # a GPU is fed by one lane through its ring
    finally:
        gpu.stop()


def _client(backend, **settings):
    embedder = Embedder(backends=[backend])
    return TestClient(create_app(embedder, ServerSettings(model_id="fake", **settings)))


def test_info_names_the_dtype_that_runs_when_the_precision_was_auto():
    embedder = Embedder("all-MiniLM-L6-v2", precision="auto")
    running = embedder.backends[0].driver.precision()  # what auto chose on this machine
    with TestClient(create_app(embedder, ServerSettings(model_id="m", workers=1))) as client:
        dtype = client.get("/info").json()["model_dtype"]
    assert dtype == {"fp32": "float32", "bf16": "bfloat16", "int8": "int8"}[running] and dtype != "auto"


def test_a_failing_backend_is_a_424_and_the_server_goes_on():
    backend = FakeBackend(dim=384, fail_on_id=1999)
    with _client(backend) as client:
        failed = client.post("/embed", json={"inputs": [[101, 1999, 102]]})
        assert failed.status_code == 424 and failed.json()["error_type"] == "Backend"
        assert "injected failure" in failed.json()["error"]
        assert client.post("/embed", json={"inputs": [[101, 2000, 102]]}).status_code == 200
        raw = client.post("/embed", json={"inputs": "x", "normalize": False})  # the fake cannot skip normalizing
        assert raw.status_code == 424 and "normalized vectors only" in raw.json()["error"]
        assert client.post("/v1/embeddings", json={"input": [[101, 1999, 102]]}).json()["error"]["type"] == \
            "server_error"


def test_a_dead_batcher_makes_the_server_unhealthy():
    with _client(FakeBackend(dim=384)) as client:
        server = client.app.state.vecsift
        server.batcher.failure = RuntimeError("batching thread crashed")
        health = client.get("/health")
        assert health.status_code == 503 and health.json()["error_type"] == "Unhealthy"
        embed = client.post("/embed", json={"inputs": "x"})
        assert embed.status_code == 503 and embed.json()["error_type"] == "Unhealthy"


def _post_scope(path: str) -> dict:
    """The ASGI scope of a JSON POST to ``path`` on 127.0.0.1."""
    return {"type": "http", "method": "POST", "path": path, "headers": [(b"content-type", b"application/json")],
            "query_string": b"", "root_path": "", "scheme": "http", "server": ("127.0.0.1", 80)}


def _asgi_request(path: str, body: dict, *, disconnect: bool):
    """An HTTP POST as the ASGI server hands it over: (scope, receive, send, what was sent). ``disconnect``:
    the client goes away right after its body (else it waits for the answer)."""
    import orjson

    scope = _post_scope(path)
    messages = [{"type": "http.request", "body": orjson.dumps(body), "more_body": False}]
    sent: list[dict] = []

    async def receive():
        if messages:
            return messages.pop(0)
        if disconnect:
            return {"type": "http.disconnect"}
        await asyncio.Event().wait()  # a patient client: never disconnects

    async def send(message):
        sent.append(message)

    return scope, receive, send, sent


def test_a_request_whose_client_left_is_never_computed():
    backend = FakeBackend(dim=384, delay=0.3)
    app = create_app(Embedder(backends=[backend]), ServerSettings(model_id="fake", workers=1))
    server = app.state.vecsift
    server.start()

    async def scenario():
        busy = _asgi_request("/embed", {"inputs": [[101, 7, 102]]}, disconnect=False)
        left = _asgi_request("/v1/embeddings", {"input": [[101, 8, 102]]}, disconnect=True)
        first = asyncio.ensure_future(app(*busy[:3]))
        await asyncio.sleep(0.1)  # the first request is computing: the second waits in the queue
        await app(*left[:3])
        await first
        return busy[3], left[3]

    try:
        answered, abandoned = asyncio.run(scenario())
    finally:
        server.stop()
    assert answered[0]["status"] == 200 and abandoned[0]["status"] == 499
    assert [size for _, size in backend.calls] == [1]  # only the first request's input was embedded
    assert server.in_flight == 0


def test_an_unexpected_error_in_an_embedding_route_is_a_500_in_the_api_shape(monkeypatch):
    with _client(FakeBackend(dim=384)) as client:
        async def broken(*args):
            raise KeyError("a bug")

        monkeypatch.setattr(client.app.state.vecsift, "embed", broken)
        tei = client.post("/embed", json={"inputs": "x"})
        assert tei.status_code == 500 and tei.json() == {"error": "internal server error", "error_type": "Backend"}
        openai = client.post("/v1/embeddings", json={"input": "x"})
        assert openai.status_code == 500 and openai.json()["error"]["type"] == "server_error"
        assert client.get("/embed").status_code == 405  # the routes stay Starlette's for other methods
        assert client.post("/tokenize", json={"inputs": "x"}).status_code == 200  # and the rest of the app


def test_admission_counts_inputs_and_releases_them():
    with _client(FakeBackend(dim=384, delay=0.2), max_concurrent_requests=3) as client:
        server = client.app.state.vecsift
        assert client.post("/embed", json={"inputs": ["a", "b", "c"]}).status_code == 200
        refused = client.post("/embed", json={"inputs": ["a", "b", "c", "d"]})
        assert refused.status_code == 429 and refused.headers["retry-after"] == "1"
        assert refused.json()["error_type"] == "Overloaded"
        assert server.in_flight == 0
    with _client(FakeBackend(dim=384), max_concurrent_requests=1, overload_status=503) as client:
        refused = client.post("/embed", json={"inputs": ["a", "b"]})
        assert refused.status_code == 503 and refused.json()["error_type"] == "Overloaded"


def _chunked_request(path: str, chunks: list[bytes], *, then_disconnect: bool):
    """A POST whose body comes in ``chunks`` with no content-length (as a chunked upload arrives), then the
    client's disconnect or its patience: (scope, receive, send, what was sent, how many messages were read)."""
    scope = _post_scope(path)
    messages = [{"type": "http.request", "body": chunk, "more_body": True} for chunk in chunks]
    sent: list[dict] = []
    read = [0]

    async def receive():
        read[0] += 1
        if messages:
            return messages.pop(0)
        if then_disconnect:
            return {"type": "http.disconnect"}
        await asyncio.Event().wait()

    async def send(message):
        sent.append(message)

    return scope, receive, send, sent, read


@pytest.mark.parametrize("path", ["/embed", "/v1/embeddings"])
def test_a_body_over_the_limit_is_refused_before_the_rest_of_it_is_read(path):
    """No content-length (a chunked upload): the body is counted as it arrives and refused with a 413 at
    the limit, without reading (and holding) the rest of it."""
    app = create_app(Embedder(backends=[FakeBackend(dim=4)]), ServerSettings(model_id="fake", payload_limit=1000))
    scope, receive, send, sent, read = _chunked_request(path, [b" " * 400] * 100, then_disconnect=False)
    asyncio.run(asyncio.wait_for(app(scope, receive, send), 30))
    assert sent[0]["status"] == 413 and b"limit of 1000 bytes" in sent[1]["body"]
    assert read[0] == 3  # 1,200 bytes: over the limit of 1,000; the other 97 chunks were never read


@pytest.mark.parametrize("path", ["/embed", "/v1/embeddings"])
def test_a_client_that_leaves_while_sending_its_body_gets_a_499_and_nothing_is_computed(path, capsys):
    backend = FakeBackend(dim=4)
    app = create_app(Embedder(backends=[backend]), ServerSettings(model_id="fake"))
    scope, receive, send, sent, _ = _chunked_request(path, [b'{"input'], then_disconnect=True)
    asyncio.run(asyncio.wait_for(app(scope, receive, send), 30))
    assert sent[0]["status"] == 499 and not backend.calls
    assert "Traceback" not in capsys.readouterr().err
