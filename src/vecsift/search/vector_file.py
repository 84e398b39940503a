"""The vector matrix of an index: one append-only float32 file, memory-mapped by searches.

Layout: a 64-byte header (magic, format version, dimension), then rows of ``dim``
little-endian float32 values. SQLite records how many rows are *committed*; a
writer appends past that, flushes to disk, and only then commits the new count,
so a crash leaves at most unreferenced rows at the end, which the next writer cuts
off. Readers map exactly the committed rows of their snapshot, which no writer
ever rewrites: compaction writes a new generation file instead.
"""

from __future__ import annotations

import os
import struct
from pathlib import Path

import numpy as np

from vecsift.errors import IndexCorruptError

MAGIC = b"VECSIFT-VECTORS\0"
FORMAT_VERSION = 1
HEADER_BYTES = 64
_HEADER = struct.Struct("<16sII")  # magic, version, dim; the rest of the 64 bytes is zero


def _header(dim: int) -> bytes:
    return _HEADER.pack(MAGIC, FORMAT_VERSION, dim).ljust(HEADER_BYTES, b"\0")


def create(path: Path, dim: int) -> None:
    """A new, empty vector file (written under a temporary name, then renamed)."""
    temporary = path.with_name(path.name + ".partial")
    with temporary.open("wb") as handle:
        handle.write(_header(dim))
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temporary, path)


def check(path: Path, dim: int, rows: int) -> None:
    """Raise :class:`IndexCorruptError` unless ``path`` is a vector file of ``dim`` holding ``rows`` rows."""
    try:
        with path.open("rb") as handle:
            head = handle.read(HEADER_BYTES)
            size = os.fstat(handle.fileno()).st_size
    except FileNotFoundError as err:
        raise IndexCorruptError(f"the vector file {path} is missing") from err
    if len(head) < HEADER_BYTES or head[:16] != MAGIC:
        raise IndexCorruptError(f"{path} is not a vecsift vector file (wrong header)")
    _, version, file_dim = _HEADER.unpack(head[: _HEADER.size])
    if version != FORMAT_VERSION or file_dim != dim:
        raise IndexCorruptError(f"{path} holds version {version}, dimension {file_dim}; "
                                f"the index expects version {FORMAT_VERSION}, dimension {dim}")
    needed = HEADER_BYTES + rows * dim * 4
    if size < needed:
        raise IndexCorruptError(f"{path} is truncated: {size} bytes, the index references {needed}")


def append(path: Path, dim: int, committed_rows: int, vectors: np.ndarray) -> int:
    """Write ``vectors`` after the committed rows (dropping any uncommitted tail); the new row count.

    The data is on disk when this returns; the caller then commits the count.
    """
    block = np.ascontiguousarray(vectors, dtype="<f4")
    if block.ndim != 2 or block.shape[1] != dim:
        raise ValueError(f"vectors of shape {block.shape} do not fit a file of dimension {dim}")
    with path.open("r+b") as handle:
        handle.truncate(HEADER_BYTES + committed_rows * dim * 4)
        handle.seek(0, os.SEEK_END)
        handle.write(block.tobytes())
        handle.flush()
        os.fsync(handle.fileno())
    return committed_rows + block.shape[0]


def read(path: Path, dim: int, rows: int) -> np.ndarray:
    """The committed rows as a read-only memory map (shape ``(rows, dim)``; empty without a mapping)."""
    if rows == 0:
        return np.zeros((0, dim), dtype=np.float32)
    check(path, dim, rows)
    return np.memmap(path, dtype="<f4", mode="r", offset=HEADER_BYTES, shape=(rows, dim))
