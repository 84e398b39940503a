"""`GenericBackend`: any Driver × any ModelArch, as an :class:`EmbedBackend`."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np

from vecsift.backend.arch.base import ModelArch
from vecsift.backend.contract import EmbedBackend
from vecsift.backend.driver.base import Driver
from vecsift.backend.precision import PrecisionChoice
from vecsift.backend.token_batch import PackBuffers, TokenBatch
from vecsift.encoding import Encoding
from vecsift.errors import BackendError, EncodingError, VecsiftError


class GenericBackend(EmbedBackend[TokenBatch, PackBuffers]):
    """Runs ``arch.forward`` on ``driver``, in sub-batches sized for the driver.

    Holds ``weights`` (the memory map behind the arch's tensors) for as long as it
    lives. Clones share the arch and the map and get a fresh driver (own scratch
    space), so they are cheap and safe to use from another thread.
    """

    def __init__(self, driver: Driver[Any], arch: ModelArch, is_gpu: bool, weights: object,
                 precision_choice: PrecisionChoice | None = None) -> None:
        self.driver = driver
        self.arch = arch
        self._is_gpu = bool(is_gpu)
        #: why this precision, when ``precision="auto"`` chose it
        self.precision_choice = precision_choice
        self.weights = weights

    def embed_batch(self, encodings: Sequence[Encoding]) -> np.ndarray:
        return self.embed_prepared(self.prepare_batch(encodings))

    def new_ring_slot(self) -> PackBuffers:
        return PackBuffers()

    def prepare_batch(self, encodings: Sequence[Encoding], slot: PackBuffers | None = None) -> TokenBatch:
        """Validate and pack ``encodings`` (into the slot's buffers when given), then hand them to the driver."""
        encodings = list(encodings)
        self._check(encodings)
        batch = TokenBatch.from_encodings(encodings, slot)
        self._check_vocabulary(batch)
        return self.driver.upload(batch)

    def embed_prepared(self, prepared: TokenBatch, normalize: bool = True) -> np.ndarray:
        out = np.empty((prepared.num_inputs, self.arch.dim), dtype=np.float32)
        for first, last in self._sub_batches(prepared):
            try:
                out[first:last] = self.arch.forward(self.driver, prepared.select(first, last), normalize)
            except VecsiftError:
                raise
            except Exception as err:  # an unexpected failure is still a typed error, never a partial result
                raise BackendError(f"{self.name()} forward pass failed: {type(err).__name__}: {err}") from err
        if not np.isfinite(out).all():
            bad = int(np.flatnonzero(~np.isfinite(out).all(axis=1))[0])
            raise BackendError(f"{self.name()} produced a non-finite embedding for input {bad}")
        return out

    def embed_pooled(self, encodings: Sequence[Encoding]) -> np.ndarray:
        return self.embed_prepared(self.prepare_batch(encodings), normalize=False)

    def _check(self, encodings: list[Encoding]) -> None:
        """Types and lengths, in C passes over the list (a GPU's producer thread checks every input)."""
        if not set(map(type, encodings)) <= {Encoding}:
            for index, encoding in enumerate(encodings):
                if not isinstance(encoding, Encoding):
                    raise EncodingError(f"input {index} is a {type(encoding).__name__}, not an Encoding")
        lengths = np.fromiter(map(len, encodings), dtype=np.int64, count=len(encodings))
        if len(encodings) and int(lengths.max()) > self.max_tokens():
            index = int(np.argmax(lengths > self.max_tokens()))
            raise EncodingError(
                f"input {index} has {lengths[index]} tokens, above this model's limit of {self.max_tokens()}; "
                "tokenize with truncation (load_tokenizer(...).encode truncates for you)"
            )

    def _check_vocabulary(self, batch: TokenBatch) -> None:
        """Every packed token id inside the vocabulary: one pass over the flat array."""
        ids = batch.input_ids[: batch.total_tokens]
        if len(ids) and int(ids.max()) >= self.arch.vocab_size:
            position = int(np.argmax(ids >= self.arch.vocab_size))
            index = int(np.searchsorted(batch.cu_seqlens, position, side="right")) - 1
            raise EncodingError(
                f"input {index} holds token id {int(ids[position])}, outside the vocabulary of size "
                f"{self.arch.vocab_size}"
            )

    def _sub_batches(self, batch: TokenBatch) -> Iterator[tuple[int, int]]:
        """Input ranges of about ``driver.preferred_batch_tokens`` tokens (at least one input each)."""
        budget = self.driver.preferred_batch_tokens
        bounds = batch.cu_seqlens.tolist()
        first = 0
        for last in range(1, batch.num_inputs + 1):
            if last - first > 1 and bounds[last] - bounds[first] > budget:
                yield first, last - 1
                first = last - 1
        if batch.num_inputs:
            yield first, batch.num_inputs

    def supports_clone(self) -> bool:
        return not self._is_gpu

    def clone_backend(self) -> GenericBackend:
        if not self.supports_clone():
            raise BackendError(f"{self.name()} cannot be cloned: GPU backends are fed by one thread, not cloned")
        return GenericBackend(self.driver.clone(), self.arch, self._is_gpu, self.weights, self.precision_choice)

    def is_gpu(self) -> bool:
        return self._is_gpu

    def max_tokens(self) -> int:
        return self.arch.max_positions

    def dim(self) -> int:
        return self.arch.dim

    def name(self) -> str:
        device = self.driver.device_label if self.driver.is_gpu else super().name()
        details = self.driver.label if self.driver.precision() == "fp32" else \
            f"{self.driver.label}, {self.driver.precision()}"
        return f"{device} ({details})"

    def describe(self) -> dict[str, Any]:
        """Facts for ``vecsift info``: model, architecture, driver."""
        return {
            "model": self.arch.files.name,
            "directory": str(self.arch.files.directory),
            **self.arch.describe(),
            "max_tokens": self.max_tokens(),
            "backend": self.name(),
            **self.driver.describe(),
            **({"precision_choice": f"auto: {self.precision_choice.reason}"} if self.precision_choice else {}),
        }
