"""`vecsift serve` as clients use it: a real server process on 127.0.0.1, real HTTP, the official openai client.

Servers are started once per module (fixtures) and always stopped; load is bounded in count and sent
to loopback only.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import os
import queue
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from processes import existing, gone, spawned_children
from vecsift import Embedder

httpx = pytest.importorskip("httpx")
pytest.importorskip("uvicorn")

TEXTS = ["retry a request with exponential backoff", "parse a configuration file", "def add(a, b): return a + b",
         "least recently used cache", "", "ünïcödé and emoji 🙂 text"]
LONG = "token " * 1000
ATOL = 1e-5  # the same engine in the same precision; batch composition may change the last bits


class Server:
    """A `vecsift serve` process and what it printed."""

    def __init__(self, process: subprocess.Popen, url: str, lines: queue.Queue) -> None:
        self.process = process
        self.url = url
        self.lines = lines


@contextlib.contextmanager
def running_server(*extra: str, own_group: bool = False) -> Iterator[Server]:
    """``own_group``: the server leads a process group of its own, as a command started in a terminal does."""
    process = subprocess.Popen([sys.executable, "-m", "vecsift", "serve", "--port", "0", "--precision", "fp32",
                                *extra], stderr=subprocess.PIPE, text=True, env={**os.environ, "HF_HUB_OFFLINE": "1"},
                               start_new_session=own_group)
    lines: queue.Queue = queue.Queue()
    threading.Thread(target=lambda: [lines.put(line) for line in process.stderr], daemon=True).start()
    url = None
    deadline = time.monotonic() + 120
    while url is None and time.monotonic() < deadline:
        try:
            line = lines.get(timeout=1)
        except queue.Empty:
            assert process.poll() is None, "the server exited before serving"
            continue
        match = re.search(r"serving on (http://\S+)", line)
        url = match.group(1) if match else None
    assert url, "the server did not start"
    server = Server(process, url, lines)
    try:
        with httpx.Client(base_url=url, timeout=60) as client:
            for _ in range(300):  # "serving on" is printed as uvicorn starts: wait until it answers
                with contextlib.suppress(httpx.ConnectError):
                    if client.get("/health").status_code == 200:
                        break
                time.sleep(0.1)
        yield server
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
        try:
            process.wait(60)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@pytest.fixture(scope="module")
def server() -> Iterator[Server]:
    with running_server() as started:
        yield started


@pytest.fixture(scope="module")
def client(server) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, timeout=60) as c:
        yield c


@pytest.fixture(scope="module")
def offline() -> Embedder:
    """The same engine as the server's (bundled model, default CPU driver, fp32)."""
    return Embedder("all-MiniLM-L6-v2", precision="fp32")


# -- TEI -------------------------------------------------------------------------------------------

def test_tei_embed_equals_the_offline_engine(client, offline):
    response = client.post("/embed", json={"inputs": TEXTS})
    assert response.status_code == 200
    vectors = np.array(response.json(), dtype=np.float32)
    assert vectors.shape == (len(TEXTS), 384)
    np.testing.assert_allclose(vectors, offline.embed(TEXTS), atol=ATOL)
    for header in ("x-total-time", "x-tokenization-time", "x-queue-time", "x-inference-time"):
        assert response.headers[header].isdigit()
    single = client.post("/embed", json={"inputs": TEXTS[0]}).json()
    assert len(single) == 1 and np.allclose(single[0], vectors[0], atol=ATOL)  # always two-dimensional


def test_token_id_inputs(client, offline):
    ids = offline.tokenizer.encode(TEXTS[:2])
    flat = client.post("/embed", json={"inputs": ids[0].input_ids.tolist()}).json()
    nested = client.post("/embed", json={"inputs": [e.input_ids.tolist() for e in ids]}).json()
    np.testing.assert_allclose(np.array(flat), offline.embed(TEXTS[:1]), atol=ATOL)
    np.testing.assert_allclose(np.array(nested), offline.embed(TEXTS[:2]), atol=ATOL)
    bad = client.post("/embed", json={"inputs": [101, 99999999, 102]})
    assert bad.status_code == 422 and "outside the vocabulary" in bad.json()["error"]


def test_normalize_false_and_dimensions(client):
    unit = np.array(client.post("/embed", json={"inputs": TEXTS[:3]}).json())
    raw = np.array(client.post("/embed", json={"inputs": TEXTS[:3], "normalize": False}).json())
    assert not np.allclose(np.linalg.norm(raw, axis=1), 1, atol=1e-3)
    np.testing.assert_allclose(raw / np.linalg.norm(raw, axis=1, keepdims=True), unit, atol=ATOL)
    cut = np.array(client.post("/embed", json={"inputs": TEXTS[:3], "dimensions": 64}).json())
    expected = unit[:, :64] / np.linalg.norm(unit[:, :64], axis=1, keepdims=True)
    assert cut.shape == (3, 64)
    np.testing.assert_allclose(cut, expected, atol=ATOL)
    for bad in (0, 385, -1, "64", 1.5):
        response = client.post("/embed", json={"inputs": "x", "dimensions": bad})
        assert response.status_code == 422 and response.json()["error_type"] == "Validation"


def test_truncation(client, offline):
    default = client.post("/embed", json={"inputs": LONG + "end"})
    assert default.status_code == 200  # truncated at the model's limit, as TEI's --auto-truncate does
    refused = client.post("/embed", json={"inputs": [TEXTS[0], LONG], "truncate": False})
    assert refused.status_code == 422 and "more than the model's limit of 256" in refused.json()["error"]
    text = "alpha beta gamma " * 200 + "the final words decide"
    left = np.array(client.post("/embed", json={"inputs": text, "truncation_direction": "left"}).json())
    right = np.array(client.post("/embed", json={"inputs": text}).json())
    assert not np.allclose(left, right, atol=1e-3)
    expected = offline.backends[0].embed_batch(offline.tokenizer.encode([text], direction="left"))
    np.testing.assert_allclose(left, expected, atol=ATOL)
    bad = client.post("/embed", json={"inputs": "x", "truncation_direction": "middle"})
    assert bad.status_code == 422


@pytest.mark.parametrize(("body", "status", "error_type"), [
    ({"inputs": []}, 400, "Empty"),
    ({"inputs": [1.5]}, 422, "Validation"),
    ({"inputs": {"text": "x"}}, 422, "Validation"),
    ({"inputs": ["x"] * 33}, 422, "Validation"),
    ({"text": "x"}, 422, "Validation"),
    ({"inputs": "x", "normalize": "yes"}, 422, "Validation"),
    ({"inputs": "x", "prompt_name": "query"}, 422, "Validation"),
    (["not", "an", "object"], 422, "Validation"),
])
def test_tei_errors(client, body, status, error_type):
    response = client.post("/embed", json=body)
    assert response.status_code == status
    assert set(response.json()) == {"error", "error_type"} and response.json()["error_type"] == error_type


@pytest.mark.parametrize(("path", "body"), [("/embed", {"inputs": ["x"] * 33}), ("/tokenize", {"inputs": ["x"] * 33}),
                                            ("/v1/embeddings", {"input": ["x"] * 33})])
def test_a_client_batch_too_large_says_what_to_do(client, path, body):
    response = client.post(path, json=body)
    error = response.json()["error"]
    message = error["message"] if isinstance(error, dict) else error
    assert response.status_code == 422 and "batch size 33 > maximum allowed batch size 32" in message
    assert "--max-client-batch-size" in message


def test_invalid_json_and_payload_limit(client):
    response = client.post("/embed", content=b"{not json", headers={"content-type": "application/json"})
    assert response.status_code == 422 and "not valid JSON" in response.json()["error"]
    big = client.post("/embed", json={"inputs": "x" * 2_100_000})
    assert big.status_code == 413 and big.json()["error_type"] == "PayloadTooLarge"


def test_tokenize_info_health_metrics(client):
    pieces = client.post("/tokenize", json={"inputs": ["hello world"]}).json()
    assert [p["text"] for p in pieces[0]] == ["[CLS]", "hello", "world", "[SEP]"]
    assert pieces[0][1] == {"id": 7592, "text": "hello", "special": False, "start": 0, "stop": 5}
    assert pieces[0][0]["special"] is True
    info = client.get("/info").json()
    for key in ("model_id", "model_dtype", "model_type", "max_concurrent_requests", "max_input_length",
                "max_batch_tokens", "max_client_batch_size", "auto_truncate", "version"):
        assert key in info
    assert (info["max_input_length"], info["max_batch_tokens"], info["max_client_batch_size"]) == (256, 16384, 32)
    assert info["model_type"] == {"embedding": {"pooling": "mean"}} and info["model_dtype"] == "float32"
    assert client.get("/health").status_code == 200
    assert client.post("/embed", json={"inputs": 5}).status_code == 422  # a failure to count
    metrics = client.get("/metrics").text
    for name in ("te_request_count_total", "te_request_success_total", "te_request_duration_bucket",
                 "te_request_tokenization_duration_bucket", "te_request_queue_duration_bucket",
                 "te_request_inference_duration_bucket", "te_batch_next_size_bucket", "te_batch_next_tokens_bucket",
                 "te_queue_size"):
        assert name in metrics, name
    assert 'te_request_failure_total{err="Validation"}' in metrics


def test_request_counters_count_each_route(client):
    def counts() -> dict[str, float]:
        lines = client.get("/metrics").text.splitlines()
        return {line.split(" ")[0]: float(line.split(" ")[1]) for line in lines
                if line.startswith(("te_request_count_total{", "te_request_success_total{"))}

    before = counts()
    client.post("/v1/embeddings", json={"input": "one more"}).raise_for_status()
    client.post("/embed", json={"inputs": ["a", "b"]}).raise_for_status()
    assert client.post("/embed", json={"inputs": 5}).status_code == 422  # received, not answered
    after = counts()
    assert {name: after[name] - before.get(name, 0.0) for name in after} == {
        'te_request_count_total{method="embed"}': 2.0, 'te_request_count_total{method="openai"}': 1.0,
        'te_request_success_total{method="embed"}': 1.0, 'te_request_success_total{method="openai"}': 1.0}


# -- OpenAI ----------------------------------------------------------------------------------------

def test_openai_shape_float_and_base64(client, offline):
    expected = offline.embed(TEXTS[:3])
    for path in ("/v1/embeddings", "/embeddings"):
        body = client.post(path, json={"input": TEXTS[:3], "model": "anything"}).json()
        assert set(body) == {"object", "data", "model", "usage"} and body["object"] == "list"
        assert [d["index"] for d in body["data"]] == [0, 1, 2]
        assert all(d["object"] == "embedding" for d in body["data"])
        assert body["usage"]["prompt_tokens"] == body["usage"]["total_tokens"] == \
            sum(len(e) for e in offline.tokenizer.encode(TEXTS[:3]))
        np.testing.assert_allclose(np.array([d["embedding"] for d in body["data"]]), expected, atol=ATOL)
    encoded = client.post("/v1/embeddings", json={"input": TEXTS[:3], "encoding_format": "base64"}).json()
    decoded = np.stack([np.frombuffer(base64.b64decode(d["embedding"]), dtype="<f4") for d in encoded["data"]])
    np.testing.assert_allclose(decoded, expected, atol=ATOL)
    cut = client.post("/v1/embeddings", json={"input": "x", "dimensions": 32}).json()
    assert len(cut["data"][0]["embedding"]) == 32


def test_openai_errors_are_nested(client):
    response = client.post("/v1/embeddings", json={"input": []})
    assert response.status_code == 400
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"} and error["param"] == "input"
    bad = client.post("/v1/embeddings", json={"input": "x", "encoding_format": "int8"})
    assert bad.status_code == 422 and bad.json()["error"]["param"] == "encoding_format"


def test_the_official_openai_client(server, offline):
    openai = pytest.importorskip("openai")
    api = openai.OpenAI(base_url=f"{server.url}/v1", api_key="unused", max_retries=0)
    expected = offline.embed(TEXTS[:4])
    default = api.embeddings.create(model="all-MiniLM-L6-v2", input=TEXTS[:4])  # asks for base64 itself
    floats = api.embeddings.create(model="all-MiniLM-L6-v2", input=TEXTS[:4], encoding_format="float")
    for result in (default, floats):
        np.testing.assert_allclose(np.array([d.embedding for d in result.data]), expected, atol=ATOL)
        assert result.usage.total_tokens > 0
    with pytest.raises(openai.BadRequestError):
        api.embeddings.create(model="all-MiniLM-L6-v2", input=[])


def test_the_model_list_for_openai_clients(server):
    openai = pytest.importorskip("openai")
    api = openai.OpenAI(base_url=f"{server.url}/v1", api_key="unused", max_retries=0)
    assert [(m.id, m.object, m.owned_by) for m in api.models.list()] == [("all-MiniLM-L6-v2", "model", "vecsift")]
    assert api.models.retrieve("all-MiniLM-L6-v2").created > 0
    with pytest.raises(openai.NotFoundError) as missing:
        api.models.retrieve("text-embedding-3-small")
    assert missing.value.body["code"] == "model_not_found" and "text-embedding-3-small" in missing.value.message
    with httpx.Client(base_url=server.url, timeout=60) as client:  # without the /v1 prefix, as /embeddings
        assert client.get("/models").json()["data"][0]["id"] == "all-MiniLM-L6-v2"
        assert client.get("/models/org/name").status_code == 404  # a model id may hold a slash


# -- concurrency, overload, shutdown -------------------------------------------------------------

def test_200_concurrent_requests_each_get_their_own_vectors(server, offline):
    texts = [f"request number {i}: {TEXTS[i % 4]} variant {i * 7 % 13}" for i in range(200)]
    expected = offline.embed(texts)

    async def main():
        limits = httpx.Limits(max_connections=200)
        async with httpx.AsyncClient(base_url=server.url, timeout=120, limits=limits) as client:
            return await asyncio.gather(*(client.post("/embed", json={"inputs": t}) for t in texts))

    responses = asyncio.run(main())
    assert all(r.status_code == 200 for r in responses)
    got = np.array([r.json()[0] for r in responses])
    np.testing.assert_allclose(got, expected, atol=ATOL)  # no cross-talk between requests in a shared batch


def _resident_kb(pid: int) -> int:
    with open(f"/proc/{pid}/status") as handle:
        return next(int(line.split()[1]) for line in handle if line.startswith("VmRSS"))


def test_overload_is_refused_at_once_and_the_server_recovers():
    with running_server("--max-concurrent-requests", "8", "--api-key", "s3cret") as server:
        headers = {"Authorization": "Bearer s3cret"}
        before = _resident_kb(server.process.pid)

        async def burst():
            async with httpx.AsyncClient(base_url=server.url, timeout=120, headers=headers,
                                         limits=httpx.Limits(max_connections=300)) as client:
                return await asyncio.gather(*(client.post("/embed", json={"inputs": [LONG] * 4})
                                              for _ in range(300)))

        responses = asyncio.run(burst())
        statuses = [r.status_code for r in responses]
        assert statuses.count(429) > 0 and statuses.count(200) > 0 and set(statuses) <= {200, 429}
        refused = next(r for r in responses if r.status_code == 429)
        assert refused.headers["retry-after"] == "1" and refused.json()["error_type"] == "Overloaded"
        with httpx.Client(base_url=server.url, timeout=60) as client:
            assert client.post("/embed", json={"inputs": "after the burst"}, headers=headers).status_code == 200
            assert client.get("/health").status_code == 200  # open without the key
            assert client.get("/metrics").status_code == 200
            assert client.post("/embed", json={"inputs": "x"}).status_code == 401
            wrong = client.post("/v1/embeddings", json={"input": "x"}, headers={"Authorization": "Bearer nope"})
            assert wrong.status_code == 401 and wrong.json()["error"]["type"] == "authentication_error"
            models = client.get("/v1/models")
            assert models.status_code == 401 and models.json()["error"]["code"] == "invalid_api_key"
            assert client.get("/v1/models", headers=headers).status_code == 200
        assert _resident_kb(server.process.pid) - before < 300_000  # bounded: refused work is never queued


@pytest.mark.parametrize("stop", ["SIGTERM to the server", "Ctrl-C in its terminal (SIGINT to the process group)"])
def test_a_stop_lets_requests_in_flight_finish_and_exits_0(stop):
    with running_server("--max-batch-tokens", "512", "--workers", "2", own_group=True) as server:
        lanes = spawned_children(server.process.pid)
        assert len(lanes) == 2
        results: list[int] = []

        def send():
            with httpx.Client(base_url=server.url, timeout=120) as client:
                results.append(client.post("/embed", json={"inputs": [LONG] * 16}).status_code)

        senders = [threading.Thread(target=send) for _ in range(4)]
        for sender in senders:
            sender.start()
        time.sleep(1.0)  # the requests are queued or computing
        if stop.startswith("SIGTERM"):
            server.process.send_signal(signal.SIGTERM)
        else:  # the lanes get it too, and must not die of it
            os.killpg(server.process.pid, signal.SIGINT)
        for sender in senders:
            sender.join(120)
        assert server.process.wait(60) == 0
        assert results == [200, 200, 200, 200]
        assert gone(lanes, running=lambda: existing(lanes))


def test_a_lane_process_that_dies_makes_the_server_unhealthy_not_hung():
    with running_server("--workers", "2") as server, httpx.Client(base_url=server.url, timeout=60) as client:
        lanes = spawned_children(server.process.pid)
        assert len(lanes) == 2
        assert client.post("/embed", json={"inputs": TEXTS}).status_code == 200
        os.kill(min(lanes), signal.SIGKILL)
        deadline = time.monotonic() + 30
        while client.get("/health").status_code == 200 and time.monotonic() < deadline:
            time.sleep(0.1)
        health = client.get("/health")
        assert health.status_code == 503 and health.json()["error_type"] == "Unhealthy"
        refused = client.post("/embed", json={"inputs": TEXTS})
        assert refused.status_code == 503 and refused.json()["error_type"] == "Unhealthy"
        server.process.send_signal(signal.SIGTERM)
        assert server.process.wait(60) == 0
        assert gone(lanes, running=lambda: existing(lanes))
    printed = "".join(iter_lines(server.lines))
    assert "Traceback" not in printed


def iter_lines(lines: queue.Queue) -> Iterator[str]:
    while True:
        try:
            yield lines.get(timeout=0.5)
        except queue.Empty:
            return


def test_search_route(tmp_path):
    repo = tmp_path / "repo"
    shutil.copytree(Path(__file__).parent / "fixtures" / "polyglot", repo)
    os.environ["VECSIFT_INDEX_DIR"] = str(tmp_path / "indexes")
    try:
        with running_server("--index", str(repo)) as server, httpx.Client(base_url=server.url, timeout=120) as client:
            hits = client.post("/search", json={"query": "least recently used cache", "top_k": 3}).json()
            assert hits[0]["path"] == "cache.rs" and len(hits) == 3
            assert set(hits[0]) == {"path", "start_line", "end_line", "score", "kind", "name", "scope", "language"}
            bad = client.post("/search", json={"query": "", "top_k": 3})
            assert bad.status_code == 422 and "query is empty" in bad.json()["error"]
            python = client.post("/search", json={"query": "cache", "top_k": 5, "lang": "py"}).json()
            assert python and {h["language"] for h in python} == {"python"}
            globbed = client.post("/search", json={"query": "cache", "top_k": 5, "glob": ["*.rs", "*.go"]}).json()
            assert globbed and {Path(h["path"]).suffix for h in globbed} <= {".rs", ".go"}
            files = client.post("/search", json={"query": "function", "top_k": 8, "files": True}).json()
            assert len({h["path"] for h in files}) == len(files) == 8
            with_text = client.post("/search", json={"query": "least recently used cache", "top_k": 1,
                                                     "content": True, "threshold": 0.0}).json()
            assert "HashMap" in with_text[0]["text"]
            for wrong in ({"lang": 3}, {"glob": [1]}, {"files": "yes"}, {"content": 1}, {"threshold": "high"},
                          {"top_k": True}, {"lang": "klingon"}):
                answer = client.post("/search", json={"query": "cache", **wrong})
                assert answer.status_code == 422 and answer.json()["error_type"] == "Validation", wrong
    finally:
        del os.environ["VECSIFT_INDEX_DIR"]


def test_a_port_in_use_is_a_clear_error(server):
    port = server.url.rsplit(":", 1)[1]
    done = subprocess.run([sys.executable, "-m", "vecsift", "serve", "--port", port, "--precision", "fp32"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 1 and f"cannot listen on 127.0.0.1:{port}" in done.stderr
    assert "Traceback" not in done.stderr
