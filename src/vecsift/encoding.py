"""`Encoding`: one tokenized input, the unit every backend consumes."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from vecsift.errors import EncodingError

_FIELDS = ("input_ids", "attention_mask", "token_type_ids")


def _as_int64_vector(name: str, value: object) -> np.ndarray:
    try:
        array = np.asarray(value)
    except (TypeError, ValueError) as err:  # ragged nested lists and the like
        raise EncodingError(f"{name} is not a 1-D integer sequence: {err}") from err
    if array.ndim != 1:
        raise EncodingError(f"{name} must be 1-D, got shape {array.shape}")
    if array.size and not np.issubdtype(array.dtype, np.integer):
        raise EncodingError(f"{name} must hold integers, got dtype {array.dtype}")
    return np.ascontiguousarray(array, dtype=np.int64)


@dataclass(frozen=True, eq=False)
class Encoding:
    """Token ids, attention mask and token types of one input, all of one non-zero length.

    Validated on construction so that a malformed input is reported where it was
    made, not deep inside a forward pass. Tokens whose mask is 0 are padding and
    take no part in attention or pooling.
    """

    input_ids: np.ndarray
    attention_mask: np.ndarray
    token_type_ids: np.ndarray
    #: the tokenizer cut the text at the truncation limit (reported, never an error)
    truncated: bool = False

    def __post_init__(self) -> None:
        arrays = {name: _as_int64_vector(name, getattr(self, name)) for name in _FIELDS}
        lengths = {name: len(array) for name, array in arrays.items()}
        if len(set(lengths.values())) != 1:
            described = ", ".join(f"{name}={n}" for name, n in lengths.items())
            raise EncodingError(f"Encoding fields differ in length: {described}")
        if lengths["input_ids"] == 0:
            raise EncodingError("Encoding is empty: input_ids has length 0")
        ids, mask, types = arrays["input_ids"], arrays["attention_mask"], arrays["token_type_ids"]
        if ids.min() < 0:
            raise EncodingError(f"input_ids holds a negative id: {int(ids.min())}")
        if types.min() < 0:
            raise EncodingError(f"token_type_ids holds a negative id: {int(types.min())}")
        if mask.min() < 0 or mask.max() > 1:  # min/max: a tenth of np.isin's cost on short inputs
            bad = int(mask[(mask < 0) | (mask > 1)][0])
            raise EncodingError(f"attention_mask must hold only 0 and 1, found {bad}")
        if not mask.any():
            raise EncodingError("attention_mask is all 0: the input has no real token")
        for name, array in arrays.items():
            array.setflags(write=False)
            object.__setattr__(self, name, array)

    @classmethod
    def trusted(cls, input_ids: np.ndarray, attention_mask: np.ndarray, token_type_ids: np.ndarray,
                truncated: bool = False) -> Encoding:
        """An encoding of read-only int64 arrays that are valid by construction (vecsift's tokenizer makes
        them), without the checks: they cost more than tokenizing a short text."""
        encoding = object.__new__(cls)
        object.__setattr__(encoding, "input_ids", input_ids)
        object.__setattr__(encoding, "attention_mask", attention_mask)
        object.__setattr__(encoding, "token_type_ids", token_type_ids)
        object.__setattr__(encoding, "truncated", truncated)
        return encoding

    @classmethod
    def from_ids(cls, input_ids: Sequence[int] | np.ndarray) -> Encoding:
        """An encoding with every token attended and token type 0."""
        ids = _as_int64_vector("input_ids", input_ids)
        return cls(ids, np.ones_like(ids), np.zeros_like(ids))

    def __len__(self) -> int:
        return len(self.input_ids)

    @property
    def num_tokens(self) -> int:
        """Tokens that take part in the forward pass (mask 1)."""
        return int(self.attention_mask.sum())
