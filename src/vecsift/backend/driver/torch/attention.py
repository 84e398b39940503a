"""The torch driver's attention routes, chosen once per driver as one object.

- :class:`SdpaAttention`: scaled-dot-product attention. Runs of equal-length inputs are contiguous rows of
  a length-sorted packed batch, so SDPA runs on views of them (no padding, no key mask); batches with
  masked-out tokens, and on a GPU batches of many lengths (a GPU pays per kernel launch), go as one padded
  SDPA with a key mask (and a band on sliding-window layers).
- :class:`VarlenAttention`: torch's variable-length flash attention (CUDA, fp16/bf16): every input of the
  packed batch in one kernel, rows as they are. Used only where a probe against SDPA agrees with it; what
  it cannot take (masked batches; sliding windows on torch builds without ``window_size``) goes to SDPA.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F

from vecsift.backend.token_batch import TokenBatch

#: torch's varlen flash attention (or a stand-in with its signature) and whether it takes ``window_size``
VarlenKernel = tuple[Callable[..., torch.Tensor] | None, bool]


class SdpaAttention:
    """SDPA on equal-length runs, or one padded and masked SDPA (see the module docstring)."""

    def __init__(self, device: torch.device, pad_many_runs: bool, label: str = "sdpa") -> None:
        self.device = device
        #: one padded SDPA for a dense batch of several lengths (GPUs), instead of one SDPA per run
        self.pad_many_runs = pad_many_runs
        self.label = label

    def __call__(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, batch: TokenBatch, num_heads: int,
                 window: int | None = None) -> torch.Tensor:
        runs = batch.equal_length_runs() if batch.dense else []
        if not batch.dense or (self.pad_many_runs and len(runs) > 1):
            return self.padded(q, k, v, batch, num_heads, window)
        _total, hidden = q.shape
        head_dim = hidden // num_heads
        out = torch.empty_like(q)
        bounds = batch.cu_seqlens.tolist()
        for first, last, length in runs:
            rows = slice(bounds[first], bounds[last])

            def heads(x: torch.Tensor, rows: slice = rows, n: int = last - first, length: int = length) -> torch.Tensor:
                return x[rows].view(n, length, num_heads, head_dim).transpose(1, 2)

            band = None
            if window is not None and length > window + 1:
                offsets = torch.arange(length, device=self.device)
                band = (offsets[:, None] - offsets[None, :]).abs() <= window
            context = F.scaled_dot_product_attention(heads(q), heads(k), heads(v), attn_mask=band)
            out[rows] = context.transpose(1, 2).reshape(-1, hidden)
        return out

    def padded(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, batch: TokenBatch, num_heads: int,
               window: int | None) -> torch.Tensor:
        """Inputs with masked-out tokens: padded layout with a key mask (and band) on their positions."""
        total, hidden = q.shape
        head_dim = hidden // num_heads
        lengths = batch.lengths
        count, width = len(lengths), int(lengths.max())
        starts = np.repeat(batch.cu_seqlens[:-1], lengths)
        slots = self._index(np.repeat(np.arange(count) * width, lengths) + np.arange(total) - starts)
        valid = torch.zeros(count * width, dtype=torch.bool, device=self.device)
        valid[slots] = True

        def padded(x: torch.Tensor) -> torch.Tensor:
            out = x.new_zeros((count * width, hidden))
            out[slots] = x
            return out.view(count, width, num_heads, head_dim).transpose(1, 2)

        mask = valid.view(count, 1, 1, width)
        if window is not None:
            positions = torch.zeros(count * width, dtype=torch.int64, device=self.device)
            positions[slots] = self._index(batch.position_ids)
            positions = positions.view(count, width)
            mask = mask & ((positions[:, :, None] - positions[:, None, :]).abs() <= window)[:, None]
        context = F.scaled_dot_product_attention(padded(q), padded(k), padded(v), attn_mask=mask)
        return context.transpose(1, 2).reshape(count * width, hidden)[slots]

    def _index(self, ids: np.ndarray | torch.Tensor) -> torch.Tensor:
        if isinstance(ids, torch.Tensor):
            return ids.to(self.device)
        return torch.from_numpy(np.ascontiguousarray(ids)).to(self.device, non_blocking=True)


class VarlenAttention:
    """Varlen flash attention over the packed batch; SDPA (``fallback``) for what it cannot take."""

    def __init__(self, kernel: Callable[..., torch.Tensor], supports_window: bool, fallback: SdpaAttention) -> None:
        self.kernel = kernel
        self.supports_window = supports_window
        self.fallback = fallback
        self.label = "varlen flash" + (" (sliding window too)" if supports_window else " (global layers)")
        self._cu_seqlens: tuple[np.ndarray | None, torch.Tensor | None] = (None, None)

    def __call__(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, batch: TokenBatch, num_heads: int,
                 window: int | None = None) -> torch.Tensor:
        if not batch.dense or (window is not None and not self.supports_window):
            return self.fallback(q, k, v, batch, num_heads, window)
        total, hidden = q.shape
        if self._cu_seqlens[0] is not batch.cu_seqlens:  # once per batch, not per layer
            staged = torch.from_numpy(batch.cu_seqlens.astype(np.int32)).to(self.fallback.device)
            self._cu_seqlens = (batch.cu_seqlens, staged)
        cu_seqlens, longest = self._cu_seqlens[1], int(batch.lengths.max())
        extra = {} if window is None else {"window_size": (window, window)}
        context = self.kernel(*(x.unflatten(1, (num_heads, hidden // num_heads)) for x in (q, k, v)),
                              cu_seqlens, cu_seqlens, longest, longest, **extra)
        return context.reshape(total, hidden)


Attention = SdpaAttention | VarlenAttention


def varlen_kernel() -> VarlenKernel:
    """torch's variable-length flash attention and whether it takes a sliding window; ``(None, False)`` on
    torch builds without it."""
    try:
        from torch.nn.attention.varlen import varlen_attn
    except ImportError:
        return None, False
    return varlen_attn, "window_size" in inspect.signature(varlen_attn).parameters


def choose_attention(device: torch.device, dtype: torch.dtype, found: VarlenKernel | None = None) -> Attention:
    """The route for a driver on ``device`` in ``dtype``: varlen flash on CUDA in fp16/bf16 when torch has it
    and it agrees with SDPA on a probe, else SDPA, labelled with the reason (``vecsift info`` shows it).
    ``found`` stands in for :func:`varlen_kernel` (tests run the probe on the CPU)."""
    on_gpu = device.type == "cuda"
    fallback = SdpaAttention(device, pad_many_runs=on_gpu)
    if found is None:
        if not on_gpu or dtype not in (torch.float16, torch.bfloat16):
            return fallback
        found = varlen_kernel()
    kernel, supports_window = found
    if kernel is None:
        return SdpaAttention(device, on_gpu, "sdpa (this torch has no varlen flash attention)")
    generator = torch.Generator(device).manual_seed(0)
    q, k, v = torch.randn(3, 8, 2, 32, generator=generator, device=device, dtype=dtype)
    bounds = torch.tensor([0, 3, 8], device=device, dtype=torch.int32)
    try:
        got = kernel(q, k, v, bounds, bounds, 5, 5)
    except RuntimeError as err:  # e.g. a GPU older than flash attention supports
        return SdpaAttention(device, on_gpu, f"sdpa (varlen flash attention failed its probe: {err})")
    want = torch.cat([F.scaled_dot_product_attention(*(x[a:b].transpose(0, 1)[None] for x in (q, k, v)))[0]
                      .transpose(0, 1) for a, b in ((0, 3), (3, 8))])
    if not torch.allclose(got.float(), want.float(), atol=1e-2):
        return SdpaAttention(device, on_gpu, "sdpa (varlen flash attention disagreed with SDPA in its probe)")
    return VarlenAttention(kernel, supports_window, fallback)
