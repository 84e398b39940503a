"""`Embedder`: texts in, vectors out — model, tokenizer and backends wired together."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

from vecsift.backend.contract import EmbedBackend
from vecsift.backend.loader import detect_backends, load_backend
from vecsift.errors import UsageError
from vecsift.models.config import load_model_files, read_prompts
from vecsift.models.resolve import DEFAULT_MODEL
from vecsift.scheduling.distributed import embed_distributed
from vecsift.scheduling.progress import ProgressCallback
from vecsift.scheduling.stream import EmbeddingStream, embed_stream
from vecsift.tokenizer import Tokenizer, tokenizer_for


class Embedder:
    """The high-level API: ``Embedder("all-MiniLM-L6-v2").embed(texts)`` → ``(n, dim)`` float32.

    ``kind="auto"`` runs every detected backend (GPU first, CPU when there is no GPU).
    Truncation follows the model (sentence-transformers' ``max_seq_length``,
    else its position limit) unless ``max_tokens`` asks for less.
    """

    def __init__(
        self,
        model: str = DEFAULT_MODEL,
        *,
        backends: Sequence[EmbedBackend] | None = None,
        kind: str = "cpu",
        driver: str | None = None,
        precision: str = "fp32",
        batch_size: int = 32,
        workers: int | None = None,
        max_tokens: int | None = None,
    ) -> None:
        files = load_model_files(model)
        self.model = model
        self.precision = precision
        #: the query/document and named prompts of the model's sentence-transformers config
        self.prompts = read_prompts(files.directory)
        self.tokenizer: Tokenizer = tokenizer_for(files)
        if backends is not None:
            self.backends = list(backends)
        elif kind == "auto" and driver is None:
            self.backends = detect_backends(model, precision)
        else:
            self.backends = [load_backend(kind, model, driver=driver, precision=precision)]
        if not self.backends:
            raise UsageError("backends must not be empty")
        self.max_tokens = self.tokenizer.limit_for(max_tokens)
        self.batch_size = batch_size
        self.workers = workers

    @property
    def dim(self) -> int:
        return self.backends[0].dim()

    def embed(self, texts: Sequence[str], *, progress: bool | ProgressCallback = False) -> np.ndarray:
        """One unit vector per text, in order; long texts are truncated to ``max_tokens``."""
        encodings = self.tokenizer.encode(texts, max_tokens=self.max_tokens)
        return embed_distributed(encodings, self.backends, self.batch_size, self.workers, progress)

    def embed_stream(self, texts: Iterable[str], *, progress: bool | ProgressCallback = False) -> EmbeddingStream:
        """One vector per text, in order, while ``texts`` is still being read (bounded memory)."""
        return embed_stream(texts, self.backends, self.tokenizer, self.batch_size, workers=self.workers,
                            max_tokens=self.max_tokens, progress=progress)

    def describe(self) -> dict[str, Any]:
        return {**self.backends[0].describe(), "truncation": self.max_tokens,
                "backends": [b.name() for b in self.backends]}
