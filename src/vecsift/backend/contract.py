"""The backend contract: ripvec-core's ``EmbedBackend`` trait in Python form.

Every way of computing embeddings (NumPy on the CPU, torch on CPU or CUDA, …)
is an :class:`EmbedBackend`. Schedulers rely only on this contract: CPU backends
(``is_gpu() == False``) are cloned per worker thread, GPU backends are fed by one
thread through a bounded ring of batches.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import Any

import numpy as np

from vecsift.encoding import Encoding

DEFAULT_MAX_TOKENS = 512


class EmbedBackend(ABC):
    """Turns batches of :class:`Encoding` into L2-normalized float32 vectors."""

    @abstractmethod
    def embed_batch(self, encodings: Sequence[Encoding]) -> np.ndarray:
        """Embed pre-tokenized inputs: ``(len(encodings), dim)`` float32, unit rows, in order.

        Errors propagate as typed :mod:`vecsift.errors` exceptions: never zeros,
        NaN or a partial result. An empty sequence gives shape ``(0, dim)``.
        """

    @abstractmethod
    def supports_clone(self) -> bool:
        """Whether :meth:`clone_backend` gives a cheap per-thread instance (CPU: yes)."""

    @abstractmethod
    def clone_backend(self) -> EmbedBackend:
        """A per-thread instance sharing this one's weights; ``BackendError`` if unsupported."""

    @abstractmethod
    def is_gpu(self) -> bool:
        """Whether this backend runs on a GPU (and so is fed by the ring pipeline)."""

    def embed_pooled(self, encodings: Sequence[Encoding]) -> np.ndarray:
        """The pooled vectors *before* L2 normalization (TEI's ``normalize: false``), in input order.

        Optional: a backend that only produces normalized vectors raises :class:`BackendError`.
        """
        from vecsift.errors import BackendError

        raise BackendError(f"{self.name()} produces normalized vectors only")

    def max_tokens(self) -> int:
        """Position limit of the model; longer inputs are truncated by the tokenizer."""
        return DEFAULT_MAX_TOKENS

    def prepare_batch(self, encodings: Sequence[Encoding], buffers: Any = None) -> Any:
        """Host-side work that can run ahead of the device (validation, packing, the copy to the GPU).

        The ring pipeline calls this on its producer thread with the reusable
        buffers of one ring slot, then :meth:`embed_prepared` on the driving
        thread. The default does nothing ahead: it returns the encodings.
        """
        return list(encodings)

    def embed_prepared(self, prepared: Any) -> np.ndarray:
        """Embed what :meth:`prepare_batch` returned; same result as :meth:`embed_batch`."""
        return self.embed_batch(prepared)

    def name(self) -> str:
        """A short label for progress output and ``vecsift info``."""
        return "GPU" if self.is_gpu() else "CPU"
