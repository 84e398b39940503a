"""The torch driver's attention routes, chosen once per driver as one object.

- :class:`SdpaAttention`: scaled-dot-product attention. Runs of equal-length inputs are contiguous rows of
  a length-sorted packed batch, so SDPA runs on views of them (no padding, no key mask); batches with
  masked-out tokens, and on a GPU batches of many lengths (a GPU pays per kernel launch), go as one padded
  SDPA with a key mask (and a band on sliding-window layers). On the CPU in bf16, inputs are grouped by
  length in steps of 16 and each group is one SDPA, padded under a key mask to a width of 16·k (see
  :func:`attention_width`): a batch of 32 short texts of mixed lengths (a server's batch) is ~25 runs, and
  an SDPA call per run cost a third of the forward pass (in fp32, masked SDPA is the slower kernel: runs
  stay apart there).
- :class:`VarlenAttention`: torch's variable-length flash attention (CUDA, fp16/bf16): every input of the
  packed batch in one kernel, rows as they are. Used only where a probe against SDPA agrees with it; what
  it cannot take (masked batches; sliding windows on torch builds without ``window_size``) goes to SDPA.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from vecsift.backend.token_batch import TokenBatch

#: torch's varlen flash attention (or a stand-in with its signature) and whether it takes ``window_size``
VarlenKernel = tuple[Callable[..., torch.Tensor] | None, bool]


class SdpaAttention:
    """SDPA on equal-length runs, or one padded and masked SDPA (see the module docstring)."""

    def __init__(self, device: torch.device, pad_many_runs: bool, label: str = "sdpa",
                 group_runs: bool = False) -> None:
        self.device = device
        #: one padded SDPA for a dense batch of several lengths (GPUs), instead of one SDPA per run
        self.pad_many_runs = pad_many_runs
        #: one SDPA per group of inputs in one step of 16 tokens, padded to it (CPU, bf16), not one per run
        self.group_runs = group_runs
        self.label = label + (" (inputs grouped in steps of 16 tokens)" if group_runs else "")
        self._plan: tuple[np.ndarray | None, list[Group]] = (None, [])

    def __call__(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, batch: TokenBatch, num_heads: int,
                 window: int | None = None) -> torch.Tensor:
        if batch.dense and self.group_runs and window is None:
            return self.grouped(q, k, v, batch, num_heads)
        runs = batch.equal_length_runs() if batch.dense else []
        if not batch.dense or (self.pad_many_runs and len(runs) > 1):
            return self.padded(q, k, v, batch, num_heads, window)
        out = torch.empty_like(q)
        bounds = batch.cu_seqlens.tolist()
        for first, last, length in runs:
            band = None
            if window is not None and length > window + 1:
                offsets = torch.arange(length, device=self.device)
                band = (offsets[:, None] - offsets[None, :]).abs() <= window
            _attend_run(q, k, v, out, slice(bounds[first], bounds[last]), last - first, length, num_heads, band)
        return out

    def grouped(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, batch: TokenBatch,
                num_heads: int) -> torch.Tensor:
        """One SDPA per group of nearby lengths (:func:`group_plan`): a group of one length that needs no
        padding on views, others padded by one gather per tensor (padding slots repeat a real row; the key
        mask hides them) and gathered back."""
        _total, hidden = q.shape
        head_dim = hidden // num_heads
        out = torch.empty_like(q)
        plan = self._plan  # read once: the check and the use see the same plan
        if plan[0] is not batch.cu_seqlens:  # once per batch, not per layer
            plan = self._plan = (batch.cu_seqlens, group_plan(batch))
        for group in plan[1]:
            rows = slice(group.start, group.end)
            if group.gather is None:
                _attend_run(q, k, v, out, rows, group.count, group.width, num_heads)
                continue

            def padded(x: torch.Tensor, g: Group = group) -> torch.Tensor:
                return x.index_select(0, g.gather).view(g.count, g.width, num_heads, head_dim).transpose(1, 2)

            context = F.scaled_dot_product_attention(padded(q), padded(k), padded(v), attn_mask=group.mask)
            out[rows] = context.transpose(1, 2).reshape(-1, hidden).index_select(0, group.real)
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


def _attend_run(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, out: torch.Tensor, rows: slice, count: int,
                width: int, num_heads: int, band: torch.Tensor | None = None) -> None:
    """SDPA over ``count`` inputs of ``width`` tokens each, stored one after another at ``rows`` of the
    packed batch (views: no padding), written into the same rows of ``out``."""
    hidden = q.shape[1]

    def heads(x: torch.Tensor) -> torch.Tensor:
        return x[rows].view(count, width, num_heads, hidden // num_heads).transpose(1, 2)

    context = F.scaled_dot_product_attention(heads(q), heads(k), heads(v), attn_mask=band)
    out[rows] = context.transpose(1, 2).reshape(-1, hidden)


@dataclass(frozen=True)
class Group:
    """Consecutive inputs attended in one SDPA call: rows ``start:end`` of the packed batch, ``count`` inputs
    padded to ``width`` (``gather``, ``mask`` and ``real`` are None when they all have that length)."""

    start: int
    end: int
    count: int
    width: int
    gather: torch.Tensor | None  # (count × width,) packed row of each padded slot (padding repeats a real row)
    mask: torch.Tensor | None  # (count, 1, 1, width): which keys are real
    real: torch.Tensor | None  # (end - start,) padded slot of each packed row


#: CPU SDPA (bf16 and fp32) runs widths of a multiple of this many tokens on its fast path
ATTENTION_TILE = 16
#: a width at most this many tokens past a multiple of ATTENTION_TILE is left as it is
TILE_SLACK_TOKENS = 4


def attention_width(longest: int) -> int:
    """The width a group whose longest input has ``longest`` tokens is padded to.

    The CPU's SDPA runs a width of 16·k far faster than the widths around it: one thread, bf16, MiniLM's
    12 heads of 32, per (input, head) with a key mask: 16 tokens 1.6 µs against 3.6 at 12 and 4.5 at 14;
    32 tokens 2.6 µs against 6.0 at 30; 256 tokens 60 µs against 98 at 250 (Xeon with AMX; fp32 shows the
    same steps). A few tokens past a step stay as they are: 4 tokens 1.4 µs, 18 2.0, 20 2.5, 34 4.7 (48: 5.8).
    """
    tail = longest % ATTENTION_TILE
    if tail <= TILE_SLACK_TOKENS:
        return longest
    return longest + ATTENTION_TILE - tail


def group_plan(batch: TokenBatch) -> list[Group]:
    """Groups of consecutive inputs whose lengths round up to the same multiple of
    :data:`ATTENTION_TILE`, each padded to :func:`attention_width` (a length-sorted batch makes few).

    Against groups of lengths within 1.5x + 4 of the shortest, padded to their longest input, one thread:
    the forward pass over random batches of 8, 27 and 64 short lines (a server's batches) takes 0.96x,
    0.94x and 0.82x the time; over the same lines in length-sorted batches (``Embedder.embed``) 0.99x,
    0.97x and 0.88x.
    """
    lengths = batch.lengths.tolist()
    bounds = batch.cu_seqlens.tolist()
    steps = [-(-n // ATTENTION_TILE) for n in lengths]  # each length rounded up to a multiple of the tile
    groups = []
    first = 0
    for i in range(1, len(lengths) + 1):
        if i < len(lengths) and steps[i] == steps[first]:
            continue
        part = np.asarray(lengths[first:i])
        width, count = attention_width(int(part.max())), i - first
        if (part == width).all():
            groups.append(Group(bounds[first], bounds[i], count, width, None, None, None))
        else:
            slot = np.arange(width)
            gather = np.asarray(bounds[first:i])[:, None] + np.minimum(slot[None, :], part[:, None] - 1)
            valid = slot[None, :] < part[:, None]
            groups.append(Group(bounds[first], bounds[i], count, width, torch.from_numpy(gather.reshape(-1)),
                                 torch.from_numpy(valid).view(count, 1, 1, width),
                                 torch.from_numpy(np.flatnonzero(valid.reshape(-1)))))
        first = i
    return groups


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
        cached = self._cu_seqlens  # read once: the check and the use see the same pair
        if cached[0] is not batch.cu_seqlens:  # once per batch, not per layer
            staged = torch.from_numpy(batch.cu_seqlens.astype(np.int32)).to(self.fallback.device)
            cached = self._cu_seqlens = (batch.cu_seqlens, staged)
        cu_seqlens, longest = cached[1], int(batch.lengths.max())
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
    fallback = SdpaAttention(device, pad_many_runs=on_gpu, group_runs=not on_gpu and dtype == torch.bfloat16)
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
