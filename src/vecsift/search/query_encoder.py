"""One query → one vector, on the calling thread, with the NumPy driver.

A query is a single short text: a worker pool or a torch import would cost more
than the forward pass itself (torch's import alone is ~1 s here), so queries take
the lightest path the engine has. Vectors indexed with another driver or precision
are compared with fp32 query vectors; their cosines agree within ~0.004 (bf16)
and the search quality sets measure what that does to rankings.
"""

from __future__ import annotations

import threading

import numpy as np

from vecsift.backend.contract import EmbedBackend
from vecsift.errors import UsageError
from vecsift.tokenizer import Tokenizer


class QueryEncoder:
    """Loads the model on first use and embeds queries with ``prompt`` before them."""

    def __init__(self, model: str, prompt: str = "") -> None:
        self.model = model
        self.prompt = prompt
        self._lock = threading.Lock()
        self._backend: EmbedBackend | None = None
        self._tokenizer: Tokenizer | None = None

    def _load(self) -> tuple[EmbedBackend, Tokenizer]:
        with self._lock:
            if self._backend is None or self._tokenizer is None:
                from vecsift.backend.loader import load_backend
                from vecsift.tokenizer import load_tokenizer

                self._tokenizer = load_tokenizer(self.model)
                self._backend = load_backend("cpu", self.model, driver="numpy")
            return self._backend, self._tokenizer

    def encode(self, query: str) -> np.ndarray:
        """The unit vector of ``query``, shape ``(dim,)``."""
        if not isinstance(query, str) or not query.strip():
            raise UsageError("the query is empty; give some words or code to search for")
        backend, tokenizer = self._load()
        return backend.embed_batch(tokenizer.encode([self.prompt + query]))[0]
