"""Writing vectors as they are produced: .npy (+ an ids JSONL beside it) or JSONL.

Files are written under a temporary name in the target folder and renamed into
place only when complete, so an interrupted or failed run never leaves a
truncated output behind. The .npy header is rewritten with the final row count
at the end (a fixed-size header makes that possible without a second pass).
"""

from __future__ import annotations

import json
import os
import struct
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO

import numpy as np

from vecsift.errors import UsageError

FORMATS = ("npy", "jsonl")
_NPY_HEADER_BYTES = 128  # magic, version, length, then the header dict padded with spaces


def infer_format(output: str | None, requested: str | None) -> str:
    suffix = Path(output).suffix.lower().lstrip(".") if output and output != "-" else ""
    if requested and suffix in FORMATS and suffix != requested:
        raise UsageError(f"--format {requested} would write {requested} into {output!r}, whose suffix says {suffix}; "
                         "make them agree")
    if requested:
        return requested
    if output is None or output == "-":
        return "jsonl"
    if suffix not in FORMATS:
        raise UsageError(f"cannot tell the format of {output!r} from its suffix; use .npy/.jsonl or --format")
    return suffix


def ids_path(npy_path: Path) -> Path:
    """Where the ids of an .npy output go: ``vectors.npy`` → ``vectors.ids.jsonl``."""
    return npy_path.with_suffix(".ids.jsonl")


def check_output_folder(output: str | None) -> None:
    """Fail before any work when the output's folder does not exist."""
    if output is None or output == "-":
        return
    directory = Path(output).parent if str(Path(output).parent) else Path(".")
    if not directory.is_dir():
        raise UsageError(f"output folder {directory} does not exist")


@contextmanager
def atomic_file(path: Path, mode: str) -> Iterator[IO]:
    """A file that appears at ``path`` only if the block completes."""
    directory = path.parent if str(path.parent) else Path(".")
    if not directory.is_dir():
        raise UsageError(f"output folder {directory} does not exist")
    fd, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".partial", dir=directory)
    try:
        os.chmod(temporary, _mode_for(path))  # mkstemp makes 0600; the result should not be private
        with os.fdopen(fd, mode) as handle:
            yield handle
        os.replace(temporary, path)
    except BaseException:
        os.unlink(temporary)
        raise


def _mode_for(path: Path) -> int:
    """An existing file's permissions (overwriting keeps them), else what the umask gives a new file."""
    try:
        return path.stat().st_mode & 0o7777
    except FileNotFoundError:
        umask = os.umask(0)
        os.umask(umask)
        return 0o666 & ~umask


def npy_header(rows: int, dim: int) -> bytes:
    """A version 1.0 .npy header for a C-order float32 (rows, dim) array, always 128 bytes."""
    text = f"{{'descr': '<f4', 'fortran_order': False, 'shape': ({rows}, {dim}), }}"
    body_len = _NPY_HEADER_BYTES - 10
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", body_len) + text.ljust(body_len - 1).encode("latin-1") + b"\n"


class VectorWriter:
    """Receives (id, vector) pairs in order; ``rows`` counts them."""

    def __init__(self, vectors: IO, ids: IO | None, fmt: str, dim: int, paths: list[str],
                 flush_each: bool = False) -> None:
        self._vectors = vectors
        self._ids = ids
        self._fmt = fmt
        self.dim = dim
        #: flush after every row: a reader at the other end of a pipe gets each vector as it is made
        self._flush_each = flush_each
        self.rows = 0
        #: the files this writer produces (empty for stdout)
        self.paths = paths
        if fmt == "npy":
            vectors.write(b"\0" * _NPY_HEADER_BYTES)  # rewritten with the real shape at the end

    def write(self, record_id: str, vector: np.ndarray) -> None:
        if self._fmt == "npy":
            self._vectors.write(np.ascontiguousarray(vector, dtype="<f4").tobytes())
            self._ids.write(json.dumps({"index": self.rows, "id": record_id}, ensure_ascii=False) + "\n")
        else:
            row = {"index": self.rows, "id": record_id, "vector": [round(float(x), 7) for x in vector]}
            self._vectors.write(json.dumps(row, ensure_ascii=False) + "\n")
        self.rows += 1
        if self._flush_each:
            self._vectors.flush()

    def finish(self) -> None:
        if self._fmt == "npy":
            self._vectors.seek(0)
            self._vectors.write(npy_header(self.rows, self.dim))


@contextmanager
def open_writer(output: str | None, fmt: str, dim: int) -> Iterator[VectorWriter]:
    """A writer for ``output`` (None or '-': JSONL on stdout); files appear only when it completes."""
    if fmt not in FORMATS:
        raise UsageError(f"unknown output format {fmt!r}; choose one of {list(FORMATS)}")
    if output is None or output == "-":
        if fmt == "npy":
            raise UsageError("the npy format needs an output file (-o vectors.npy)")
        writer = VectorWriter(sys.stdout, None, fmt, dim, [], flush_each=True)
        yield writer
        sys.stdout.flush()
        return
    path = Path(output)
    if fmt == "jsonl":
        with atomic_file(path, "w") as handle:
            writer = VectorWriter(handle, None, fmt, dim, [str(path)])
            yield writer
        return
    with atomic_file(ids_path(path), "w") as ids_handle, atomic_file(path, "wb") as npy_handle:
        writer = VectorWriter(npy_handle, ids_handle, fmt, dim, [str(path), str(ids_path(path))])
        yield writer
        writer.finish()
