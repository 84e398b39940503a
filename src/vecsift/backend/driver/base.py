"""The Driver protocol: hardware primitives that architectures are written over.

An architecture (ClassicBert, ModernBERT) is written once as a sequence of these
calls; each driver (NumPy on the CPU, torch on CPU or CUDA) implements them on
its own tensor type. Inputs arrive unpadded (:class:`TokenBatch`): activations
are ``(total_tokens, features)`` and attention runs within each input.

A trailing ``_`` (``add_``, ``layer_norm_``, ``gelu_``, ``rope_``) means: the input may be overwritten
and must not be used afterwards; the result is what the call returns. A driver may write in place (NumPy
does, saving memory traffic) or return a new tensor (torch's fused kernels do); callers never rely on
either, only on the returned value.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, Generic, TypeVar

import numpy as np

from vecsift.backend.token_batch import TokenBatch
from vecsift.hardware import cpu_model

Tensor = TypeVar("Tensor")


class Driver(ABC, Generic[Tensor]):
    """Compute primitives on one device. Instances may hold scratch space: one per thread."""

    #: short label used in backend names, e.g. ``"numpy"``
    label: str = "driver"
    #: whether tensors live on a GPU
    is_gpu: bool = False
    #: how backends name the device, e.g. ``"CUDA"``
    device_label: str = "CPU"
    #: tokens per forward call that keep this driver efficient (sub-batch budget)
    preferred_batch_tokens: int = 4096

    @abstractmethod
    def clone(self) -> Driver[Tensor]:
        """A driver on the same device with its own scratch space, for another thread."""

    def precision(self) -> str:
        return "fp32"

    # -- moving data -------------------------------------------------------------------
    @abstractmethod
    def weight(self, array: np.ndarray) -> Tensor:
        """A model weight as a driver tensor, without copying where the device allows."""

    def linear_weight(self, array: np.ndarray) -> Any:
        """A linear layer's ``(out, in)`` weight; drivers that quantize (int8) override this."""
        return self.weight(array)

    def upload(self, batch: TokenBatch) -> TokenBatch:
        """Move a packed batch's index arrays to the device ahead of its forward pass.

        Called on the ring pipeline's producer thread, so a GPU driver can copy
        from pinned host memory while the previous batch computes. CPU: as is.
        """
        return batch

    @abstractmethod
    def to_numpy(self, x: Tensor) -> np.ndarray:
        """A float32 host copy (or view) of ``x``."""

    # -- primitives ---------------------------------------------------------------------
    @abstractmethod
    def gather(self, table: Tensor, ids: np.ndarray) -> Tensor:
        """Rows ``table[ids]``: embedding lookup, ``(len(ids), features)``."""

    @abstractmethod
    def copy(self, x: Tensor) -> Tensor:
        """A new tensor with the contents of ``x`` (before an in-place primitive that must not touch ``x``)."""

    @abstractmethod
    def add_(self, x: Tensor, y: Tensor) -> Tensor:
        """``x + y``; ``x`` may be overwritten (see the trailing ``_`` rule above)."""

    @abstractmethod
    def linear(self, x: Tensor, weight: Tensor, bias: Tensor | None, residual: Tensor | None = None) -> Tensor:
        """``x @ weight.T + bias (+ residual)``: GEMM with transposed B, Hugging Face weight layout."""

    def linear_gelu(self, x: Tensor, weight: Tensor, bias: Tensor | None) -> Tensor:
        """``gelu(x @ weight.T + bias)``, exact GELU: a driver whose GEMM can apply the GELU as it writes its
        output overrides this and saves a pass over the widest activation of the model."""
        return self.gelu_(self.linear(x, weight, bias))

    @abstractmethod
    def layer_norm_(self, x: Tensor, weight: Tensor, bias: Tensor | None, eps: float) -> Tensor:
        """Layer normalization over the last axis (trailing ``_``: ``x`` may be overwritten)."""

    def layer_norm(self, x: Tensor, weight: Tensor, bias: Tensor | None, eps: float) -> Tensor:
        """Layer normalization into a new tensor, ``x`` untouched (pre-norm layers keep ``x`` as residual)."""
        return self.layer_norm_(self.copy(x), weight, bias, eps)

    @abstractmethod
    def gelu_(self, x: Tensor) -> Tensor:
        """Exact (erf) GELU (trailing ``_``: ``x`` may be overwritten)."""

    @abstractmethod
    def geglu(self, x: Tensor) -> Tensor:
        """``gelu(x[:, :n]) * x[:, n:]`` for ``x`` of width ``2n`` (exact GELU): ModernBERT's gated MLP."""

    @abstractmethod
    def rope_(self, x: Tensor, cos: Tensor, sin: Tensor, num_heads: int) -> Tensor:
        """Rotary position embedding per head, "rotate half" convention (trailing ``_``: ``x`` may be overwritten).

        ``cos``/``sin`` are ``(total_tokens, head_dim / 2)``, already gathered for each token's position.
        """

    @abstractmethod
    def attention(
        self, q: Tensor, k: Tensor, v: Tensor, batch: TokenBatch, num_heads: int, window: int | None = None
    ) -> Tensor:
        """Softmax(q kᵀ / √head_dim) v within each input of ``batch``; ``(total_tokens, hidden)``.

        ``window``: a token attends only to tokens whose positions differ by at most
        this much (sliding-window layers). Implementations combine a batched GEMM,
        a fused scale+mask+softmax and a second batched GEMM; tokens of different
        inputs never attend to each other, and long inputs are processed in
        blocks so that no full ``n × n`` score matrix is needed on windowed layers.
        """

    @abstractmethod
    def pool(self, x: Tensor, batch: TokenBatch, mode: str) -> Tensor:
        """One row per input: ``mean``, ``cls`` (first token), ``max`` or ``mean_sqrt_len``."""

    @abstractmethod
    def l2_normalize(self, x: Tensor) -> Tensor:
        """Rows scaled to unit L2 norm."""

    def describe(self) -> dict[str, Any]:
        """Facts for ``vecsift info`` (on a CPU, which one: it decides kernels and precisions)."""
        facts = {"driver": self.label, "precision": self.precision(), "device": "gpu" if self.is_gpu else "cpu"}
        return facts if self.is_gpu else {**facts, "cpu": cpu_model()}
