"""Writing vectors: .npy (+ an ids JSONL beside it) or JSONL, atomically.

Files are written under a temporary name in the target folder and renamed into
place only when complete, so an interrupted or failed run never leaves a
truncated output behind.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import IO

import numpy as np

from vecsift.errors import UsageError
from vecsift.sources import Record

FORMATS = ("npy", "jsonl")


def infer_format(output: str | None, requested: str | None) -> str:
    if requested:
        return requested
    if output is None or output == "-":
        return "jsonl"
    suffix = Path(output).suffix.lower().lstrip(".")
    if suffix not in FORMATS:
        raise UsageError(f"cannot tell the format of {output!r} from its suffix; use .npy/.jsonl or --format")
    return suffix


def ids_path(npy_path: Path) -> Path:
    """Where the ids of an .npy output go: ``vectors.npy`` → ``vectors.ids.jsonl``."""
    return npy_path.with_suffix(".ids.jsonl")


@contextmanager
def atomic_file(path: Path, mode: str) -> Iterator[IO]:
    """A file that appears at ``path`` only if the block completes."""
    directory = path.parent if str(path.parent) else Path(".")
    if not directory.is_dir():
        raise UsageError(f"output folder {directory} does not exist")
    fd, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".partial", dir=directory)
    try:
        with os.fdopen(fd, mode) as handle:
            yield handle
        os.replace(temporary, path)
    except BaseException:
        os.unlink(temporary)
        raise


def _jsonl_lines(records: Sequence[Record], vectors: np.ndarray | None, tokens: Sequence[int]) -> Iterator[str]:
    for index, record in enumerate(records):
        row: dict[str, object] = {"index": index, "id": record.id, "tokens": int(tokens[index])}
        if vectors is not None:
            row["vector"] = [round(float(x), 7) for x in vectors[index]]
        yield json.dumps(row, ensure_ascii=False) + "\n"


def write_vectors(output: str | None, fmt: str, records: Sequence[Record], vectors: np.ndarray,
                  tokens: Sequence[int]) -> list[str]:
    """Write and return the paths written (empty for stdout)."""
    if fmt not in FORMATS:
        raise UsageError(f"unknown output format {fmt!r}; choose one of {list(FORMATS)}")
    if output is None or output == "-":
        if fmt == "npy":
            raise UsageError("the npy format needs an output file (-o vectors.npy)")
        sys.stdout.writelines(_jsonl_lines(records, vectors, tokens))
        sys.stdout.flush()
        return []
    path = Path(output)
    if fmt == "jsonl":
        with atomic_file(path, "w") as handle:
            handle.writelines(_jsonl_lines(records, vectors, tokens))
        return [str(path)]
    with atomic_file(ids_path(path), "w") as ids_handle, atomic_file(path, "wb") as npy_handle:
        ids_handle.writelines(_jsonl_lines(records, None, tokens))
        np.save(npy_handle, vectors)
    return [str(path), str(ids_path(path))]
