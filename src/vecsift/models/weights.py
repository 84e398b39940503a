"""Zero-copy access to the tensors of a ``model.safetensors`` file.

The file is memory-mapped once; float32 tensors are handed out as read-only
views into that map, so every backend clone shares the same physical pages.
The safetensors library only offers copying loaders for NumPy, which is why
the (tiny, documented) header is read here: 8 bytes of little-endian header
length, a JSON table of ``{name: {dtype, shape, data_offsets}}``, then the data.
Every offset is checked against the file, so a truncated or corrupted file is a
:class:`ModelLoadError`, never a crash or garbage numbers.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

from vecsift.errors import ModelLoadError

_DTYPES: dict[str, np.dtype] = {
    "F64": np.dtype("<f8"),
    "F32": np.dtype("<f4"),
    "F16": np.dtype("<f2"),
    "BF16": np.dtype("<u2"),  # NumPy has no bfloat16: kept as raw bits, widened on request
    "I64": np.dtype("<i8"),
    "I32": np.dtype("<i4"),
    "I16": np.dtype("<i2"),
    "I8": np.dtype("i1"),
    "U8": np.dtype("u1"),
    "BOOL": np.dtype("?"),
}
_MAX_HEADER = 100 * 1024 * 1024


class SafetensorsWeights:
    """The tensors of one safetensors file, backed by a read-only memory map."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        try:
            self._map = np.memmap(self.path, dtype=np.uint8, mode="r")
        except (OSError, ValueError) as err:
            raise ModelLoadError(f"cannot open weights file {self.path}: {err}") from err
        self._entries = self._read_header()

    def _fail(self, why: str) -> ModelLoadError:
        return ModelLoadError(f"{self.path} is not a valid safetensors file: {why}")

    def _read_header(self) -> dict[str, tuple[str, tuple[int, ...], int, int]]:
        size = len(self._map)
        if size < 8:
            raise self._fail(f"only {size} bytes long (truncated?)")
        header_len = int(np.frombuffer(self._map[:8], dtype="<u8")[0])
        if header_len > min(_MAX_HEADER, size - 8):
            raise self._fail(f"header claims {header_len} bytes but the file has {size} (truncated?)")
        try:
            header = json.loads(bytes(self._map[8 : 8 + header_len]).decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as err:
            raise self._fail(f"unreadable header ({err})") from err
        if not isinstance(header, dict):
            raise self._fail("header is not a JSON object")
        data_start, data_len = 8 + header_len, size - 8 - header_len
        entries = {}
        for name, info in header.items():
            if name == "__metadata__":
                continue
            try:
                dtype, shape = info["dtype"], tuple(int(d) for d in info["shape"])
                begin, end = (int(o) for o in info["data_offsets"])
            except (KeyError, TypeError, ValueError) as err:
                raise self._fail(f"tensor {name!r} has a malformed entry {info!r}") from err
            if dtype not in _DTYPES:
                raise self._fail(f"tensor {name!r} has unsupported dtype {dtype}")
            expected = math.prod(shape) * _DTYPES[dtype].itemsize
            if not 0 <= begin <= end <= data_len or end - begin != expected:
                raise self._fail(
                    f"tensor {name!r} spans bytes {begin}..{end} of a {data_len}-byte data "
                    f"section, but shape {list(shape)} {dtype} needs {expected} bytes (truncated?)"
                )
            entries[name] = (dtype, shape, data_start + begin, expected)
        return entries

    def __contains__(self, name: str) -> bool:
        return name in self._entries

    def shape(self, name: str) -> tuple[int, ...]:
        return self._entries[name][1]

    def raw(self, name: str) -> np.ndarray:
        """The tensor exactly as stored: a read-only view into the map, no copy."""
        if name not in self._entries:
            raise ModelLoadError(f"{self.path} has no tensor named {name!r}")
        dtype, shape, offset, nbytes = self._entries[name]
        flat = self._map[offset : offset + nbytes].view(_DTYPES[dtype])
        return flat.reshape(shape)

    def float32(self, name: str) -> np.ndarray:
        """The tensor as float32: a view when stored as F32, else converted once here."""
        dtype = self._entries[name][0] if name in self._entries else None
        array = self.raw(name)
        if dtype == "F32":
            return array
        if dtype == "BF16":
            return (array.astype(np.uint32) << 16).view(np.float32)
        if dtype in ("F16", "F64"):
            return array.astype(np.float32)
        raise ModelLoadError(f"tensor {name!r} in {self.path} is {dtype}, not a float type")
