"""`ModelArch`: a model family's forward pass, written once over Driver primitives."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any

import numpy as np

from vecsift.backend.driver.base import Driver
from vecsift.backend.token_batch import TokenBatch
from vecsift.errors import ModelLoadError
from vecsift.models.arch_config import ArchConfig
from vecsift.models.config import ModelFiles
from vecsift.models.weights import SafetensorsWeights


class ModelArch(ABC):
    """Weights of one model (as driver tensors) and the forward pass that uses them.

    An instance is immutable after loading, so backend clones share it across threads.
    """

    #: family label shown by ``vecsift info``
    family: str = "arch"

    def __init__(self, files: ModelFiles, config: ArchConfig) -> None:
        self.files = files
        self.config = config
        self.pooling = files.pooling

    @property
    def dim(self) -> int:
        """Width of the output vectors."""
        return self.config.hidden

    @property
    def vocab_size(self) -> int:
        """Token ids must be below this."""
        return self.config.vocab_size

    @property
    def max_positions(self) -> int:
        """Longest input the model accepts (its position limit, from the config alone)."""
        return self.config.max_positions

    @abstractmethod
    def hidden_states(self, driver: Driver[Any], batch: TokenBatch) -> Any:
        """The last hidden state of every real token, ``(total_tokens, hidden)``, as a driver tensor."""

    def forward(self, driver: Driver[Any], batch: TokenBatch, normalize: bool = True) -> np.ndarray:
        """Pooled float32 vectors, one row per input of ``batch``; L2-normalized unless ``normalize`` is False."""
        d = driver
        pooled = d.pool(self.hidden_states(driver, batch), batch, self.pooling)
        return d.to_numpy(d.l2_normalize(pooled) if normalize else pooled)

    def describe(self) -> dict[str, Any]:
        return {"architecture": self.family, "dim": self.dim, "pooling": self.pooling}


class TensorLoader:
    """Fetches named tensors, checks their shapes and hands them to a driver.

    Accepts checkpoints whose names carry a task-head prefix (``bert.`` in
    ``BertForMaskedLM``, ``model.`` in ModernBERT ones) by finding it once.
    """

    def __init__(self, weights: SafetensorsWeights, driver: Driver[Any], anchor: str, prefixes: tuple[str, ...]):
        self.weights = weights
        self.driver = driver
        for prefix in ("", *prefixes):
            if prefix + anchor in weights:
                self.prefix = prefix
                break
        else:
            raise ModelLoadError(
                f"{weights.path} has no tensor {anchor!r} (nor with a prefix of {list(prefixes)}): "
                "it is not a checkpoint of this architecture or is missing tensors"
            )

    def get(self, name: str, shape: tuple[int, ...]) -> Any:
        return self.driver.weight(self._float32(name, shape))

    def linear(self, name: str, shape: tuple[int, ...]) -> Any:
        """A linear layer's weight: the driver may keep it quantized."""
        return self.driver.linear_weight(self._float32(name, shape))

    def stacked(self, names: tuple[str, ...], shape: tuple[int, ...], linear: bool = False) -> Any:
        """Tensors of several layers that read the same input, stacked along the output axis: the
        attention's query, key and value projections become one GEMM (one copy at load)."""
        stack = np.concatenate([self._float32(name, shape) for name in names])
        return self.driver.linear_weight(stack) if linear else self.driver.weight(stack)

    def _float32(self, name: str, shape: tuple[int, ...]) -> np.ndarray:
        full = self.prefix + name
        if full not in self.weights:
            raise ModelLoadError(f"{self.weights.path} is missing the tensor {full!r} (expected shape {list(shape)})")
        found = self.weights.shape(full)
        if found != shape:
            raise ModelLoadError(
                f"tensor {full!r} in {self.weights.path} has shape {list(found)}, "
                f"the config implies {list(shape)}"
            )
        return self.weights.float32(full)
