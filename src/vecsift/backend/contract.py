"""The backend contract: ripvec-core's ``EmbedBackend`` trait in Python form.

Every way of computing embeddings (NumPy on the CPU, torch on CPU or CUDA, …)
is an :class:`EmbedBackend`. Schedulers rely only on this contract: CPU backends
(``is_gpu() == False``) are cloned per worker thread, GPU backends are fed by one
thread through a bounded ring of batches.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import Any, Generic, TypeVar, cast

import numpy as np

from vecsift.encoding import Encoding

DEFAULT_MAX_TOKENS = 512

#: what a backend prepares ahead of the device (the default: the encodings themselves)
Prepared = TypeVar("Prepared")
#: the reusable host buffers of one ring slot (the default: none)
Slot = TypeVar("Slot")


class EmbedBackend(ABC, Generic[Prepared, Slot]):
    """Turns batches of :class:`Encoding` into L2-normalized float32 vectors.

    ``Prepared`` and ``Slot`` type the ring's hand-off: the producer thread turns encodings into a
    ``Prepared`` batch using one ring slot's ``Slot`` buffers, the driving thread embeds it.
    """

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

    def dim(self) -> int:
        """The embedding dimension. The default asks an empty batch; backends that know it say so."""
        return int(self.embed_batch([]).shape[1])

    def new_ring_slot(self) -> Slot | None:
        """Reusable host buffers for one slot of the GPU ring (e.g. pinned packing arrays), made once per
        slot and handed back to :meth:`prepare_batch` batch after batch. The default: none."""
        return None

    def prepare_batch(self, encodings: Sequence[Encoding], slot: Slot | None = None) -> Prepared:
        """Host-side work that can run ahead of the device (validation, packing, the copy to the GPU).

        The ring pipeline calls this on its producer thread with one ring slot's buffers, then
        :meth:`embed_prepared` on the driving thread. The default does nothing ahead: the prepared batch is
        the list of encodings.
        """
        return cast(Prepared, list(encodings))

    def embed_prepared(self, prepared: Prepared) -> np.ndarray:
        """Embed what :meth:`prepare_batch` returned; same result as :meth:`embed_batch`."""
        return self.embed_batch(cast(Sequence[Encoding], prepared))

    def name(self) -> str:
        """A short label for progress output and ``vecsift info``."""
        return "GPU" if self.is_gpu() else "CPU"

    def describe(self) -> dict[str, Any]:
        """Facts for ``vecsift info``; backends that know more (model, architecture, driver) add them."""
        return {"backend": self.name(), "dim": self.dim(), "max_tokens": self.max_tokens()}
