import numpy as np
import pytest

from vecsift import Encoding
from vecsift.errors import EncodingError, VecsiftError


def test_valid_encoding_is_int64_and_read_only():
    e = Encoding([101, 7592, 102], [1, 1, 1], [0, 0, 0])
    assert e.input_ids.dtype == np.int64 and len(e) == 3 and e.num_tokens == 3
    with pytest.raises(ValueError):
        e.input_ids[0] = 5


def test_from_ids_defaults():
    e = Encoding.from_ids([1, 2])
    assert e.attention_mask.tolist() == [1, 1] and e.token_type_ids.tolist() == [0, 0]


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        (([1, 2, 3], [1, 1], [0, 0, 0]), "input_ids=3, attention_mask=2, token_type_ids=3"),
        (([], [], []), "empty"),
        (([1, -4], [1, 1], [0, 0]), "negative id: -4"),
        (([1, 2], [1, 1], [0, -1]), "token_type_ids holds a negative"),
        (([1, 2], [1, 2], [0, 0]), "only 0 and 1, found 2"),
        (([1, 2], [0, 0], [0, 0]), "all 0"),
        (([[1, 2]], [[1, 1]], [[0, 0]]), "must be 1-D"),
        (([1.5, 2.0], [1, 1], [0, 0]), "must hold integers"),
        ((["a", "b"], [1, 1], [0, 0]), "must hold integers"),
    ],
)
def test_malformed_encodings_are_rejected_with_the_field_named(fields, message):
    with pytest.raises(EncodingError, match=message) as info:
        Encoding(*fields)
    assert isinstance(info.value, ValueError) and isinstance(info.value, VecsiftError)
