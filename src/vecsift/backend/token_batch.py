"""`TokenBatch`: encodings packed without padding, the form architectures consume.

Only tokens with attention mask 1 are kept, concatenated; ``cu_seqlens`` marks
where each input starts. Linear layers then work on real tokens only, and
attention runs per input, so no work is spent on padding.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from itertools import pairwise

import numpy as np

from vecsift.encoding import Encoding


class PackBuffers:
    """Reusable host arrays that batches are packed into (one per ring slot): no allocation per batch
    once they have grown to the largest batch seen."""

    def __init__(self) -> None:
        self.tokens = np.empty((3, 0), dtype=np.int64)  # input ids, positions, token types
        self.cu_seqlens = np.zeros(1, dtype=np.int64)

    def reserve(self, total_tokens: int, num_inputs: int) -> None:
        if self.tokens.shape[1] < total_tokens:
            self.tokens = np.empty((3, max(total_tokens, self.tokens.shape[1] * 3 // 2)), dtype=np.int64)
        if len(self.cu_seqlens) < num_inputs + 1:
            self.cu_seqlens = np.zeros(max(num_inputs + 1, len(self.cu_seqlens) * 3 // 2), dtype=np.int64)


@dataclass(frozen=True)
class TokenBatch:
    """Token arrays are host NumPy arrays; after a GPU driver's ``upload`` they may be device tensors
    (``cu_seqlens`` always stays on the host: it steers the loops)."""

    input_ids: np.ndarray  # (total_tokens,) int64
    position_ids: np.ndarray  # (total_tokens,) int64, each token's index in its input
    token_type_ids: np.ndarray  # (total_tokens,) int64
    cu_seqlens: np.ndarray  # (num_inputs + 1,) int64, cumulative lengths starting at 0
    dense: bool = True  # every input kept all its tokens: positions are 0 … n-1

    @classmethod
    def from_encodings(cls, encodings: Sequence[Encoding], buffers: PackBuffers | None = None) -> TokenBatch:
        """Pack ``encodings``, into ``buffers`` when given (the result then views them): one concatenation per
        field, no loop over inputs unless some have masked-out tokens."""
        count = len(encodings)
        lengths = np.fromiter(map(len, encodings), dtype=np.int64, count=count)
        full_total = int(lengths.sum())
        dense = count == 0 or bool(np.concatenate([e.attention_mask for e in encodings]).all())
        kept = None if dense else [np.flatnonzero(e.attention_mask) for e in encodings]
        if kept is not None:
            lengths = np.fromiter(map(len, kept), dtype=np.int64, count=count)
        total = full_total if dense else int(lengths.sum())
        buffers = buffers or PackBuffers()
        buffers.reserve(total, count)
        ids, positions, types = buffers.tokens[:, :total]
        cu_seqlens = buffers.cu_seqlens[: count + 1]
        np.cumsum(lengths, out=cu_seqlens[1:])
        if dense:
            if count:
                np.concatenate([e.input_ids for e in encodings], out=ids)
                np.concatenate([e.token_type_ids for e in encodings], out=types)
            np.subtract(np.arange(total), np.repeat(cu_seqlens[:-1], lengths), out=positions)
            return cls(ids, positions, types, cu_seqlens, dense)
        for i, e in enumerate(encodings):
            rows = slice(cu_seqlens[i], cu_seqlens[i + 1])
            ids[rows], types[rows] = e.input_ids[kept[i]], e.token_type_ids[kept[i]]
            positions[rows] = kept[i]
        return cls(ids, positions, types, cu_seqlens, dense)

    @property
    def num_inputs(self) -> int:
        return len(self.cu_seqlens) - 1

    @property
    def total_tokens(self) -> int:
        return int(self.cu_seqlens[-1])

    @property
    def lengths(self) -> np.ndarray:
        return np.diff(self.cu_seqlens)

    def spans(self) -> list[tuple[int, int]]:
        """``(start, end)`` row range of each input."""
        return list(pairwise(self.cu_seqlens.tolist()))

    def equal_length_runs(self) -> list[tuple[int, int, int]]:
        """``(first input, last input, length)`` of each run of consecutive inputs of one length.

        The schedulers sort inputs by length, so a batch is a few such runs; each is a
        contiguous block of rows that attention can treat as ``(inputs, length)``.
        """
        lengths = self.lengths
        edges = [0, *(np.flatnonzero(np.diff(lengths)) + 1).tolist(), len(lengths)]
        return [(a, b, int(lengths[a])) for a, b in pairwise(edges) if b > a]

    def select(self, first: int, last: int) -> TokenBatch:
        """Inputs ``first`` to ``last`` (exclusive) as a batch of their own, viewing the same arrays."""
        start, end = int(self.cu_seqlens[first]), int(self.cu_seqlens[last])
        rows = slice(start, end)
        return TokenBatch(self.input_ids[rows], self.position_ids[rows], self.token_type_ids[rows],
                          self.cu_seqlens[first : last + 1] - start, self.dense)
