"""The wire formats: TEI's and OpenAI's embedding requests (and ``/search``'s) in, their responses and errors out.

Parsing turns either request into one :class:`EmbedRequest`; nothing here knows about
batching or models beyond the few limits it validates against.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from typing import Any

import numpy as np

from vecsift.errors import is_int

# TEI's error types and the statuses it answers them with.
STATUS = {"Validation": 422, "Empty": 400, "Tokenizer": 422, "Backend": 424, "Overloaded": 429,
          "Unhealthy": 503, "PayloadTooLarge": 413, "Unauthorized": 401, "NotFound": 404}
_OPENAI_TYPES = {400: "invalid_request_error", 401: "authentication_error", 404: "not_found_error",
                 413: "invalid_request_error", 422: "invalid_request_error", 424: "server_error",
                 429: "rate_limit_error", 500: "server_error", 503: "server_error"}


class ApiError(Exception):
    """A request that cannot be served, with the HTTP status and TEI error type to answer with."""

    def __init__(self, error_type: str, message: str, *, status: int | None = None, param: str | None = None,
                 retry_after: int | None = None) -> None:
        super().__init__(message)
        self.error_type = error_type
        self.status = status or STATUS[error_type]
        self.param = param
        self.retry_after = retry_after

    def tei(self) -> dict[str, Any]:
        return {"error": str(self), "error_type": self.error_type}

    def openai(self) -> dict[str, Any]:
        code = {429: "rate_limit_exceeded", 401: "invalid_api_key", 404: "model_not_found"}.get(self.status)
        return {"error": {"message": str(self), "type": _OPENAI_TYPES.get(self.status, "invalid_request_error"),
                          "param": self.param, "code": code}}


Input = str | list[int]  # a text, or one already tokenized input


@dataclass(frozen=True)
class EmbedRequest:
    """One client request, whichever API it came through."""

    inputs: list[Input]
    normalize: bool = True
    truncate: bool = True
    direction: str = "right"  # where truncation cuts: "right" keeps the start, "left" the end
    prompt: str = ""
    dimensions: int | None = None


@dataclass(frozen=True)
class Limits:
    """What requests are checked against."""

    dim: int
    max_client_batch_size: int
    prompts: dict[str, str]


def _inputs(value: Any, field: str, limits: Limits) -> list[Input]:
    """TEI and OpenAI both take str | [str] | [int] | [[int]] (a flat int list is one tokenized input)."""
    if isinstance(value, str):
        inputs: list[Input] = [value]
    elif isinstance(value, list) and value and all(is_int(x) for x in value):
        inputs = [list(value)]
    elif isinstance(value, list):
        inputs = []
        for index, item in enumerate(value):
            if isinstance(item, str):
                inputs.append(item)
            elif isinstance(item, list) and item and all(is_int(x) for x in item):
                inputs.append(list(item))
            else:
                raise ApiError("Validation", f"`{field}[{index}]` must be a string or a non-empty list of token ids, "
                                             f"got {type(item).__name__}", param=field)
    else:
        raise ApiError("Validation", f"`{field}` must be a string, a list of strings, a list of token ids or a "
                                     f"list of such lists, got {type(value).__name__}", param=field)
    if not inputs:
        raise ApiError("Empty", f"`{field}` cannot be empty", param=field)
    check_client_batch(len(inputs), limits.max_client_batch_size, field)
    return inputs


def check_client_batch(count: int, limit: int, field: str) -> None:
    """A request of more than ``limit`` inputs is a 422 (TEI's words), with what a client or operator can do."""
    if count > limit:
        raise ApiError("Validation", f"batch size {count} > maximum allowed batch size {limit}: send at most "
                                     f"{limit} inputs per request, or start the server with a larger "
                                     "--max-client-batch-size", param=field)


@dataclass(frozen=True)
class SearchRequest:
    """A ``POST /search`` body: the query, ``Index.search``'s keyword arguments, and whether to send chunk texts."""

    query: str
    options: dict[str, Any]
    content: bool = False


def parse_search(body: Any) -> SearchRequest:
    """``{"query", "top_k", "mode"}`` and the CLI's filters (``lang``, ``glob``, ``threshold``, ``files``), checked
    for their JSON types here; their values (an unknown mode or language, ``top_k`` < 1) by ``Index.search``."""
    if not isinstance(body, dict) or not isinstance(body.get("query"), str):
        raise ApiError("Validation", 'the body must be {"query": str, "top_k": int, "mode": str, …}')

    def strings(name: str) -> list[str]:
        value = body.get(name, [])
        value = [value] if isinstance(value, str) else value
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise ApiError("Validation", f"`{name}` must be a string or a list of strings, got {value!r}")
        return value

    for name in ("files", "content"):
        if not isinstance(body.get(name, False), bool):
            raise ApiError("Validation", f"`{name}` must be true or false, got {body[name]!r}")
    threshold = body.get("threshold")
    if threshold is not None and (isinstance(threshold, bool) or not isinstance(threshold, int | float)):
        raise ApiError("Validation", f"`threshold` must be a number, got {threshold!r}")
    return SearchRequest(body["query"], {
        "top_k": body.get("top_k", 10), "mode": body.get("mode", "hybrid"), "languages": strings("lang") or None,
        "globs": tuple(strings("glob")), "threshold": threshold, "per_file": body.get("files", False),
    }, body.get("content", False))


def _dimensions(value: Any, limits: Limits) -> int | None:
    if value is None:
        return None
    if not is_int(value) or not 0 < value <= limits.dim:
        raise ApiError("Validation", f"`dimensions` must be an integer from 1 to {limits.dim}, got {value!r}",
                       param="dimensions")
    return value


def _flag(body: dict[str, Any], key: str, default: bool) -> bool:
    value = body.get(key, default)
    if value is None:
        return default
    if not isinstance(value, bool):
        raise ApiError("Validation", f"`{key}` must be true or false, got {value!r}", param=key)
    return value


def _object(body: Any) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise ApiError("Validation", f"the request body must be a JSON object, got {type(body).__name__}")
    return body


def parse_tei(body: Any, limits: Limits) -> EmbedRequest:
    """``POST /embed``'s body."""
    body = _object(body)
    if "inputs" not in body:
        raise ApiError("Validation", "missing field `inputs`", param="inputs")
    direction = body.get("truncation_direction", "right") or "right"
    if not isinstance(direction, str) or direction.lower() not in ("right", "left"):
        raise ApiError("Validation", f"`truncation_direction` must be 'right' or 'left', got {direction!r}",
                       param="truncation_direction")
    prompt = ""
    name = body.get("prompt_name")
    if name is not None:
        if name not in limits.prompts:
            known = ", ".join(sorted(limits.prompts)) or "none: the model's config defines no prompts"
            raise ApiError("Validation", f"unknown `prompt_name` {name!r}; known: {known}", param="prompt_name")
        prompt = limits.prompts[name]
    return EmbedRequest(_inputs(body["inputs"], "inputs", limits), normalize=_flag(body, "normalize", True),
                        truncate=_flag(body, "truncate", True), direction=direction.lower(), prompt=prompt,
                        dimensions=_dimensions(body.get("dimensions"), limits))


def parse_openai(body: Any, limits: Limits) -> tuple[EmbedRequest, str]:
    """``POST /v1/embeddings``'s body: the request and its encoding format."""
    body = _object(body)
    if "input" not in body:
        raise ApiError("Validation", "missing field `input`", param="input")
    encoding_format = body.get("encoding_format") or "float"
    if encoding_format not in ("float", "base64"):
        raise ApiError("Validation", f"`encoding_format` must be 'float' or 'base64', got {encoding_format!r}",
                       param="encoding_format")
    return EmbedRequest(_inputs(body["input"], "input", limits),
                        dimensions=_dimensions(body.get("dimensions"), limits)), encoding_format


def shape_vectors(vectors: np.ndarray, request: EmbedRequest) -> np.ndarray:
    """Matryoshka truncation to ``dimensions`` (re-normalized when the request normalizes)."""
    if request.dimensions is None or request.dimensions == vectors.shape[1]:
        return vectors
    cut = np.ascontiguousarray(vectors[:, : request.dimensions])
    if request.normalize:
        cut /= np.maximum(np.linalg.norm(cut, axis=1, keepdims=True), 1e-12)
    return cut


def openai_response(vectors: np.ndarray, encoding_format: str, model: str, tokens: int) -> dict[str, Any]:
    if encoding_format == "base64":  # little-endian float32, as the official client decodes it
        data = [base64.b64encode(np.ascontiguousarray(v, dtype="<f4").tobytes()).decode("ascii") for v in vectors]
    else:
        data = list(vectors)  # rows of a float32 array: orjson writes them without a per-float Python path
    return {"object": "list",
            "data": [{"object": "embedding", "index": i, "embedding": e} for i, e in enumerate(data)],
            "model": model, "usage": {"prompt_tokens": tokens, "total_tokens": tokens}}
