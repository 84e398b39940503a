"""vecsift: fast, trustworthy text and code embeddings (ripvec-core's EmbedBackend in Python)."""

from vecsift.backend.contract import EmbedBackend
from vecsift.backend.generic import GenericBackend
from vecsift.backend.loader import detect_backends, load_backend
from vecsift.embedder import Embedder
from vecsift.encoding import Encoding
from vecsift.scheduling.distributed import embed_distributed
from vecsift.tokenizer import Tokenizer, load_tokenizer

#: batches in flight for a GPU backend's ring-buffer pipeline (the seed's bound on memory)
RING_SIZE = 4

__version__ = "0.1.0"

__all__ = [
    "RING_SIZE",
    "EmbedBackend",
    "Embedder",
    "Encoding",
    "GenericBackend",
    "Tokenizer",
    "detect_backends",
    "embed_distributed",
    "load_backend",
    "load_tokenizer",
]
