"""The memory-mapped safetensors reader: zero-copy views, conversions, corrupt files."""

from __future__ import annotations

import json
import struct

import numpy as np
import pytest
from safetensors.numpy import save_file

from vecsift.errors import ModelLoadError
from vecsift.models.weights import SafetensorsWeights


@pytest.fixture
def tensors_file(tmp_path):
    path = tmp_path / "model.safetensors"
    save_file({"a": np.arange(12, dtype=np.float32).reshape(3, 4), "h": np.array([1.5, -2.25], dtype=np.float16),
               "i": np.array([7], dtype=np.int64)}, str(path))
    return path


def test_float32_tensors_are_views_into_the_memory_map(tensors_file):
    weights = SafetensorsWeights(tensors_file)
    a = weights.float32("a")
    assert a.shape == (3, 4) and a.tolist()[2] == [8, 9, 10, 11]
    assert not a.flags.writeable and not a.flags.owndata
    assert np.shares_memory(a, weights._map)  # the map itself, not a copy of it
    assert np.shares_memory(weights.float32("a"), a)


def test_half_precision_is_widened_once(tensors_file):
    weights = SafetensorsWeights(tensors_file)
    h = weights.float32("h")
    assert h.dtype == np.float32 and h.tolist() == [1.5, -2.25]


def test_bfloat16_bits_are_widened_exactly(tmp_path):
    values = np.array([1.0, -3.5, 0.0078125], dtype=np.float32)
    bits = (values.view(np.uint32) >> 16).astype(np.uint16)
    header = json.dumps({"w": {"dtype": "BF16", "shape": [3], "data_offsets": [0, 6]}}).encode()
    path = tmp_path / "bf16.safetensors"
    path.write_bytes(struct.pack("<Q", len(header)) + header + bits.tobytes())
    assert SafetensorsWeights(path).float32("w").tolist() == values.tolist()


def test_integer_tensor_is_not_a_float(tensors_file):
    with pytest.raises(ModelLoadError, match="I64, not a float"):
        SafetensorsWeights(tensors_file).float32("i")


def test_missing_tensor_is_named(tensors_file):
    with pytest.raises(ModelLoadError, match="no tensor named 'zzz'"):
        SafetensorsWeights(tensors_file).raw("zzz")


def test_truncated_file_is_refused(tensors_file, tmp_path):
    data = tensors_file.read_bytes()
    cut = tmp_path / "cut.safetensors"
    cut.write_bytes(data[:-10])
    with pytest.raises(ModelLoadError, match="truncated"):
        SafetensorsWeights(cut)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "cannot open"),
        (b"abc", "only 3 bytes"),
        (struct.pack("<Q", 10**12) + b"{}", "header claims"),
        (struct.pack("<Q", 4) + b"\xff\xfe{}", "unreadable header"),
        (struct.pack("<Q", 2) + b"[]", "not a JSON object"),
        (struct.pack("<Q", 23) + b'{"w": {"dtype": "F32"}}', "malformed entry"),
    ],
)
def test_corrupted_files_are_refused(tmp_path, content, message):
    path = tmp_path / "bad.safetensors"
    path.write_bytes(content)
    with pytest.raises(ModelLoadError, match=message):
        SafetensorsWeights(path)


def test_unknown_dtype_and_bad_offsets(tmp_path):
    for entry, message in [
        ({"dtype": "F8_E4M3", "shape": [1], "data_offsets": [0, 1]}, "unsupported dtype"),
        ({"dtype": "F32", "shape": [4], "data_offsets": [0, 8]}, "needs 16 bytes"),
    ]:
        header = json.dumps({"w": entry}).encode()
        path = tmp_path / "x.safetensors"
        path.write_bytes(struct.pack("<Q", len(header)) + header + b"\0" * 8)
        with pytest.raises(ModelLoadError, match=message):
            SafetensorsWeights(path)
