"""vecsift: fast, trustworthy text and code embeddings (ripvec-core's EmbedBackend in Python).

The names below load on first use (PEP 562), so ``import vecsift`` (and the command line's start) costs
nothing until an engine is asked for.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

#: public name → the module that defines it
_EXPORTS = {
    "RING_SIZE": "vecsift.scheduling",
    "EmbedBackend": "vecsift.backend.contract",
    "Embedder": "vecsift.embedder",
    "EmbeddingStream": "vecsift.scheduling",
    "Encoding": "vecsift.encoding",
    "GenericBackend": "vecsift.backend.generic",
    "Tokenizer": "vecsift.tokenizer",
    "detect_backends": "vecsift.backend.loader",
    "embed_distributed": "vecsift.scheduling",
    "embed_stream": "vecsift.scheduling",
    "load_backend": "vecsift.backend.loader",
    "load_tokenizer": "vecsift.tokenizer",
}

__all__ = [
    "RING_SIZE",
    "EmbedBackend",
    "Embedder",
    "EmbeddingStream",
    "Encoding",
    "GenericBackend",
    "Tokenizer",
    "detect_backends",
    "embed_distributed",
    "embed_stream",
    "load_backend",
    "load_tokenizer",
]

if TYPE_CHECKING:
    from vecsift.backend.contract import EmbedBackend
    from vecsift.backend.generic import GenericBackend
    from vecsift.backend.loader import detect_backends, load_backend
    from vecsift.embedder import Embedder
    from vecsift.encoding import Encoding
    from vecsift.scheduling import RING_SIZE, EmbeddingStream, embed_distributed, embed_stream
    from vecsift.tokenizer import Tokenizer, load_tokenizer


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'vecsift' has no attribute {name!r}")
    value = getattr(import_module(module), name)
    globals()[name] = value  # the next lookup is a plain attribute
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_EXPORTS})
