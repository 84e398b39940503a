"""Backends: the EmbedBackend contract and its Driver × ModelArch implementation."""

from vecsift.backend.contract import DEFAULT_MAX_TOKENS, EmbedBackend
from vecsift.backend.generic import GenericBackend
from vecsift.backend.loader import detect_backends, load_backend
from vecsift.backend.token_batch import TokenBatch
from vecsift.encoding import Encoding

__all__ = [
    "DEFAULT_MAX_TOKENS",
    "EmbedBackend",
    "Encoding",
    "GenericBackend",
    "TokenBatch",
    "detect_backends",
    "load_backend",
]
