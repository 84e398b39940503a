"""vecsift: fast, trustworthy text and code embeddings (ripvec-core's EmbedBackend in Python)."""

from vecsift.backend.contract import EmbedBackend
from vecsift.backend.generic import GenericBackend
from vecsift.backend.loader import detect_backends, load_backend
from vecsift.embedder import Embedder
from vecsift.encoding import Encoding
from vecsift.scheduling import RING_SIZE, EmbeddingStream, embed_distributed, embed_stream
from vecsift.tokenizer import Tokenizer, load_tokenizer

__version__ = "0.1.0"

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
