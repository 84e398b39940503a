"""The ASGI app of `vecsift serve`: TEI's and OpenAI's embedding routes, tokenize, info, health,
metrics, and code search, over one :class:`Batcher`.

Per request: admission (inputs in flight against ``max_concurrent_requests``, answered at once with
429 or 503 and ``Retry-After`` when full), parsing and validation, tokenization (off the event loop, many
requests per call: :mod:`.tokenizing`), the batcher, and the response encoded by
orjson straight from the float32 rows. Every response carries TEI's per-stage timing headers.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import time
import traceback
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np
import orjson
from prometheus_client import CONTENT_TYPE_LATEST
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from vecsift import __version__
from vecsift.backend.generic import GenericBackend
from vecsift.embedder import Embedder
from vecsift.encoding import Encoding
from vecsift.errors import EncodingError, UsageError, VecsiftError
from vecsift.server.batcher import Batcher, BatchStats, Job
from vecsift.server.lane_process import LaneSpec
from vecsift.server.metrics import Metrics
from vecsift.server.protocol import (
    ApiError,
    EmbedRequest,
    Limits,
    check_client_batch,
    openai_response,
    parse_openai,
    parse_search,
    parse_tei,
    shape_vectors,
)
from vecsift.server.tokenizing import TokenizingStage

OPENAI_PATHS = ("/v1/embeddings", "/embeddings")
OPENAI_MODEL_PATHS = ("/v1/models", "/models")  # OpenAI's model list (``client.models.list()``) and its items
OPEN_PATHS = ("/health", "/metrics")  # answered without the API key


@dataclass(frozen=True)
class ServerSettings:
    """Limits and switches of one server (TEI's defaults)."""

    model_id: str
    max_batch_tokens: int = 16384
    max_concurrent_requests: int = 512  # inputs admitted and not yet answered
    max_client_batch_size: int = 32
    payload_limit: int = 2_000_000  # bytes of a request body
    api_key: str | None = None
    overload_status: int = 429  # or 503
    tokenization_workers: int = 2
    batch_size: int = 32  # inputs per unit of the CPU worker pool
    workers: int | None = None
    lane_processes: bool = True  # CPU lanes compute in processes of their own (see server/lane_process.py)


class _Server:
    """Everything the routes share: engine, batcher, counters."""

    def __init__(self, embedder: Embedder, settings: ServerSettings, index: Any | None) -> None:
        self.embedder = embedder
        self.settings = settings
        self.index = index
        self.metrics = Metrics()
        self.in_flight = 0  # touched on the event loop only
        backend = embedder.backends[0]
        vocab_size = int(getattr(getattr(backend, "arch", None), "vocab_size", 0)) or None
        self.max_tokens = embedder.max_tokens
        self.limits = Limits(dim=embedder.dim, max_client_batch_size=settings.max_client_batch_size,
                             prompts=dict(embedder.prompts.named))
        self.batcher: Batcher | None = None
        self.tokenizing = TokenizingStage(embedder.tokenizer, max_tokens=self.max_tokens, vocab_size=vocab_size,
                                          workers=settings.tokenization_workers)
        self.searching = ThreadPoolExecutor(1, thread_name_prefix="vecsift-search")

    def start(self) -> None:
        """Start the lanes (once)."""
        if self.batcher is not None:
            return
        self.tokenizing.start()
        try:
            self.batcher = Batcher(self.embedder.backends, max_batch_tokens=self.settings.max_batch_tokens,
                                   batch_size=self.settings.batch_size, workers=self.settings.workers,
                                   on_batch=self._batch_done, lane_spec=self._lane_spec())
        except BaseException:
            self.tokenizing.stop()  # no thread outlives a server that could not start
            raise

    def _lane_spec(self) -> LaneSpec | None:
        """What a lane process needs to build this backend again; None keeps the lanes in this process."""
        backend = self.embedder.backends[0]
        if not self.settings.lane_processes or not isinstance(backend, GenericBackend):
            return None
        return LaneSpec(self.embedder.model, backend.driver.label, backend.driver.precision())

    def stop(self) -> None:
        if self.batcher is not None:
            self.batcher.stop()
        self.tokenizing.stop()
        self.searching.shutdown(wait=True)

    def _batch_done(self, stats: BatchStats) -> None:
        self.metrics.batch_size.observe(stats.inputs)
        self.metrics.batch_tokens.observe(stats.tokens)
        self.metrics.batch_duration.observe(stats.seconds)
        self.metrics.queue_size.set(self.batcher.queued if self.batcher else 0)

    # -- steps of a request --------------------------------------------------------------------

    def admit(self, inputs: int) -> None:
        limit = self.settings.max_concurrent_requests
        if self.in_flight + inputs > limit:
            raise ApiError("Overloaded", f"model is overloaded: {self.in_flight} inputs in flight, the limit is "
                                         f"{limit}; retry later", status=self.settings.overload_status, retry_after=1)
        self.in_flight += inputs
        self.metrics.in_flight.set(self.in_flight)

    def release(self, inputs: int) -> None:
        self.in_flight -= inputs
        self.metrics.in_flight.set(self.in_flight)

    async def embed(self, receive: Receive, request: EmbedRequest) -> tuple[np.ndarray, int, dict[str, str]]:
        """Vectors for ``request`` (shaped as asked), their token count, and the timing headers."""
        started = time.perf_counter()
        self.admit(len(request.inputs))
        try:
            encodings = await self.tokenizing.tokenize(request)
            tokenized = time.perf_counter()
            rows, queue_seconds, inference_seconds = await self._through_batcher(receive, encodings,
                                                                                 request.normalize)
        finally:
            self.release(len(request.inputs))
        vectors = shape_vectors(rows, request)
        total = time.perf_counter() - started
        m = self.metrics
        m.tokenization.observe(tokenized - started)
        m.queue.observe(queue_seconds)
        m.inference.observe(inference_seconds)
        m.duration.observe(total)
        headers = {"x-total-time": str(round(total * 1000)), "x-tokenization-time": str(round((tokenized - started)
                   * 1000)), "x-queue-time": str(round(queue_seconds * 1000)),
                   "x-inference-time": str(round(inference_seconds * 1000))}
        return vectors, sum(len(e) for e in encodings), headers

    async def _through_batcher(self, receive: Receive, encodings: list[Encoding],
                               normalize: bool) -> tuple[np.ndarray, float, float]:
        if self.batcher is None or not self.batcher.healthy():
            raise ApiError("Unhealthy", "the model is not ready or its batching thread stopped")
        loop = asyncio.get_running_loop()
        settled: asyncio.Future = loop.create_future()

        def deliver(rows, error, queue_seconds, inference_seconds) -> None:
            def settle() -> None:
                if not settled.done():
                    settled.set_result((rows, error, queue_seconds, inference_seconds))
            loop.call_soon_threadsafe(settle)

        job = Job(encodings, normalize, deliver)
        self.batcher.submit(job)
        self.metrics.queue_size.set(self.batcher.queued)

        def client_gone(watcher: asyncio.Task) -> None:
            if not watcher.cancelled() and not settled.done():
                job.cancelled = True  # dropped before it is computed, if it was not yet
                settled.set_exception(_client_closed())

        gone = loop.create_task(_client_gone(receive))
        gone.add_done_callback(client_gone)
        try:
            await settled
        finally:
            gone.cancel()
        rows, error, queue_seconds, inference_seconds = settled.result()
        if error is not None:
            if isinstance(error, EncodingError):
                raise ApiError("Validation", str(error)) from error
            raise ApiError("Backend", f"inference failed: {error}") from error
        return rows, queue_seconds, inference_seconds


async def _client_gone(receive: Receive) -> None:
    """Returns when the client disconnects (the body was read already: the next message is the disconnect)."""
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return


def _is_openai(path: str) -> bool:
    """Whether ``path`` is one of OpenAI's routes (its errors then take OpenAI's nested form)."""
    return path in OPENAI_PATHS or any(path == p or path.startswith(p + "/") for p in OPENAI_MODEL_PATHS)


def _client_closed() -> ApiError:
    return ApiError("Validation", "the client closed the connection", status=499)


def _json(content: Any) -> bytes:
    """``content`` as JSON bytes; NumPy arrays straight from their buffers."""
    return orjson.dumps(content, option=orjson.OPT_SERIALIZE_NUMPY)


async def _send_json(send: Send, content: Any, headers: dict[str, str]) -> None:
    """A 200 with ``content`` as JSON, sent as the two ASGI messages (no Starlette ``Response`` per request)."""
    body = _json(content)
    await send({"type": "http.response.start", "status": 200, "headers": [
        (b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
        *((name.encode(), value.encode()) for name, value in headers.items())]})
    await send({"type": "http.response.body", "body": body})


class ORJSONResponse(Response):
    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return _json(content)


def _error(err: ApiError, openai: bool) -> Response:
    headers = {"Retry-After": str(err.retry_after)} if err.retry_after is not None else None
    return ORJSONResponse(err.openai() if openai else err.tei(), status_code=err.status, headers=headers)


async def _body(scope: Scope, receive: Receive, limit: int) -> Any:
    """The request's JSON body, read from the ASGI messages themselves (a Starlette ``Request`` per request
    cost more than the read on a busy event loop), never more than ``limit`` bytes of it."""
    declared = next((value for name, value in scope["headers"] if name == b"content-length"), None)
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise ApiError("PayloadTooLarge", f"the request body has {declared.decode()} bytes, more than the limit "
                                          f"of {limit}")
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise _client_closed()
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise ApiError("PayloadTooLarge", f"the request body has more than the limit of {limit} bytes")
        chunks.append(chunk)
        if not message.get("more_body", False):
            break
    raw = chunks[0] if len(chunks) == 1 else b"".join(chunks)
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as err:
        raise ApiError("Validation", f"the request body is not valid JSON: {err}") from err


def create_app(embedder: Embedder, settings: ServerSettings, index: Any | None = None, *,
               start_now: bool = False) -> Starlette:
    """The app; the batcher starts with the app's lifespan (``start_now``: here, so that a lane that cannot
    start is the caller's error, before anything listens) and drains when it stops."""
    server = _Server(embedder, settings, index)
    if start_now:
        server.start()

    async def tei_embed(scope: Scope, receive: Receive, send: Send) -> None:
        server.metrics.received["embed"].inc()
        try:
            parsed = parse_tei(await _body(scope, receive, settings.payload_limit), server.limits)
            vectors, _, headers = await server.embed(receive, parsed)
        except ApiError as err:
            server.metrics.failures.labels(err=err.error_type).inc()
            await _error(err, openai=False)(scope, receive, send)
            return
        server.metrics.answered["embed"].inc()
        await _send_json(send, vectors, headers)

    async def openai_embeddings(scope: Scope, receive: Receive, send: Send) -> None:
        server.metrics.received["openai"].inc()
        try:
            parsed, encoding_format = parse_openai(await _body(scope, receive, settings.payload_limit),
                                                   server.limits)
            vectors, tokens, headers = await server.embed(receive, parsed)
        except ApiError as err:
            server.metrics.failures.labels(err=err.error_type).inc()
            await _error(err, openai=True)(scope, receive, send)
            return
        server.metrics.answered["openai"].inc()
        await _send_json(send, openai_response(vectors, encoding_format, settings.model_id, tokens), headers)

    async def tokenize(request: Request) -> Response:
        try:
            body = await _body(request.scope, request.receive, settings.payload_limit)
            inputs = body.get("inputs") if isinstance(body, dict) else None
            texts = [inputs] if isinstance(inputs, str) else inputs
            if not isinstance(texts, list) or not texts or not all(isinstance(t, str) for t in texts):
                raise ApiError("Validation", "`inputs` must be a string or a non-empty list of strings")
            check_client_batch(len(texts), settings.max_client_batch_size, "inputs")
            pieces = await asyncio.get_running_loop().run_in_executor(None, embedder.tokenizer.pieces, texts)
        except ApiError as err:
            return _error(err, openai=False)
        return ORJSONResponse(pieces)

    async def info(_: Request) -> Response:
        facts = embedder.describe()
        precision = facts.get("precision", embedder.precision)  # what runs: "auto" resolved by the backend
        return ORJSONResponse({
            "model_id": settings.model_id, "model_sha": None,
            "model_dtype": {"fp32": "float32", "bf16": "bfloat16", "fp16": "float16", "int8": "int8"}.get(
                precision, precision),
            "model_type": {"embedding": {"pooling": facts.get("pooling", "mean")}},
            "max_concurrent_requests": settings.max_concurrent_requests, "max_input_length": server.max_tokens,
            "max_batch_tokens": settings.max_batch_tokens, "max_batch_requests": None,
            "max_client_batch_size": settings.max_client_batch_size, "auto_truncate": True,
            "tokenization_workers": settings.tokenization_workers, "version": __version__, "sha": None,
            "docker_label": None, "backend": facts.get("backend"), "dim": embedder.dim})

    listed_at = int(time.time())

    def model_card() -> dict[str, Any]:
        return {"id": settings.model_id, "object": "model", "created": listed_at, "owned_by": "vecsift"}

    async def list_models(_: Request) -> Response:
        return ORJSONResponse({"object": "list", "data": [model_card()]})

    async def retrieve_model(request: Request) -> Response:
        name = request.path_params["model"]
        if name != settings.model_id:
            return _error(ApiError("NotFound", f"the model '{name}' does not exist; this server serves "
                                               f"'{settings.model_id}'", param="model"), openai=True)
        return ORJSONResponse(model_card())

    async def health(_: Request) -> Response:
        if server.batcher is None or not server.batcher.healthy():
            return _error(ApiError("Unhealthy", "the batching thread is not running"), openai=False)
        return Response(status_code=200)

    async def metrics(_: Request) -> Response:
        return Response(server.metrics.render(), media_type=CONTENT_TYPE_LATEST)

    async def search(request: Request) -> Response:
        try:
            if server.index is None:
                raise ApiError("NotFound", "this server has no code index; start it with --index PATH")
            asked = parse_search(await _body(request.scope, request.receive, settings.payload_limit))

            def run() -> list[dict[str, Any]]:
                try:
                    return [hit.as_dict(content=asked.content) for hit in server.index.search(asked.query,
                                                                                             **asked.options)]
                except UsageError as err:
                    raise ApiError("Validation", str(err)) from err
                except VecsiftError as err:
                    raise ApiError("Backend", str(err)) from err

            results = await asyncio.get_running_loop().run_in_executor(server.searching, run)
        except ApiError as err:
            return _error(err, openai=False)
        return ORJSONResponse(results)

    @contextlib.asynccontextmanager
    async def lifespan(_: Starlette) -> AsyncIterator[None]:
        server.start()
        try:
            yield
        finally:
            await asyncio.get_running_loop().run_in_executor(None, server.stop)

    embedding_routes = {"/embed": tei_embed, **{path: openai_embeddings for path in OPENAI_PATHS}}
    app = Starlette(routes=[
        *(Route(path, _AsgiEndpoint(handler), methods=["POST"]) for path, handler in embedding_routes.items()),
        Route("/tokenize", tokenize, methods=["POST"]),
        Route("/info", info, methods=["GET"]),
        Route("/health", health, methods=["GET"]),
        Route("/metrics", metrics, methods=["GET"]),
        Route("/search", search, methods=["POST"]),
        *(Route(path, list_models, methods=["GET"]) for path in OPENAI_MODEL_PATHS),
        *(Route(path + "/{model:path}", retrieve_model, methods=["GET"]) for path in OPENAI_MODEL_PATHS),
    ], lifespan=lifespan)
    app.state.vecsift = server
    fast = _EmbeddingRoutesFirst(app, embedding_routes)
    return _require_key(fast, settings.api_key) if settings.api_key else fast


class _AsgiEndpoint:
    """An ASGI handler that Starlette routes to as it is (it wraps plain functions as request → response)."""

    def __init__(self, handler: ASGIApp) -> None:
        self.handler = handler

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self.handler(scope, receive, send)


class _EmbeddingRoutesFirst:
    """POSTs to the embedding routes go straight to their handlers, everything else through Starlette: its
    router and middleware stack cost a sixth of a short request's time on the event loop. An unexpected
    error there is a 500 in TEI's shape (and its traceback on stderr), as Starlette would answer it."""

    def __init__(self, app: Starlette, routes: dict[str, ASGIApp]) -> None:
        self.app = app
        self.routes = routes
        self.state = app.state

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        handler = self.routes.get(scope["path"]) if scope["type"] == "http" and scope["method"] == "POST" else None
        if handler is None:
            await self.app(scope, receive, send)
            return
        started = False

        async def tracked(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await handler(scope, receive, tracked)
        except Exception:
            traceback.print_exc()
            if not started:
                err = ApiError("Backend", "internal server error", status=500)
                await _error(err, openai=_is_openai(scope["path"]))(scope, receive, send)


def _require_key(app: ASGIApp, key: str) -> ASGIApp:
    """ASGI middleware: ``Authorization: Bearer KEY`` on every route but /health and /metrics (401 otherwise)."""
    expected = f"Bearer {key}".encode()

    async def guarded(scope, receive, send):
        if scope["type"] == "http" and scope["path"] not in OPEN_PATHS:
            given = dict(scope.get("headers", [])).get(b"authorization", b"")
            if not hmac.compare_digest(given, expected):
                err = ApiError("Unauthorized", "missing or wrong API key: send `Authorization: Bearer KEY`")
                await _error(err, openai=_is_openai(scope["path"]))(scope, receive, send)
                return
        await app(scope, receive, send)

    return guarded

