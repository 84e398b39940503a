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


@dataclass(frozen=True)
class TokenBatch:
    input_ids: np.ndarray  # (total_tokens,) int64
    position_ids: np.ndarray  # (total_tokens,) int64, each token's index in its input
    token_type_ids: np.ndarray  # (total_tokens,) int64
    cu_seqlens: np.ndarray  # (num_inputs + 1,) int64, cumulative lengths starting at 0

    @classmethod
    def from_encodings(cls, encodings: Sequence[Encoding]) -> TokenBatch:
        if all(e.attention_mask.all() for e in encodings):
            positions = [np.arange(len(e), dtype=np.int64) for e in encodings]
        else:
            positions = [np.flatnonzero(e.attention_mask) for e in encodings]
        lengths = np.array([len(p) for p in positions], dtype=np.int64)
        cu_seqlens = np.zeros(len(encodings) + 1, dtype=np.int64)
        np.cumsum(lengths, out=cu_seqlens[1:])
        return cls(
            input_ids=np.concatenate([e.input_ids[p] for e, p in zip(encodings, positions, strict=True)]),
            position_ids=np.concatenate(positions),
            token_type_ids=np.concatenate([e.token_type_ids[p] for e, p in zip(encodings, positions, strict=True)]),
            cu_seqlens=cu_seqlens,
        )

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
        bounds = self.cu_seqlens.tolist()
        return list(pairwise(bounds))
