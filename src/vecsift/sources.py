"""Reading texts to embed: files and directories (skipping binaries), JSONL, lines."""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from vecsift.errors import UsageError

_SKIP_DIRS = {".git", ".hg", ".svn", "__pycache__", "node_modules", ".venv", "venv", ".tox", ".mypy_cache",
              ".pytest_cache", ".ruff_cache", "build", "dist"}
_SNIFF_BYTES = 8192


@dataclass(frozen=True)
class Record:
    """One text to embed and where it came from."""

    id: str
    text: str


def is_binary(path: Path) -> bool:
    """A NUL byte or invalid UTF-8 in the first 8 KiB: not text we can embed."""
    with path.open("rb") as handle:
        head = handle.read(_SNIFF_BYTES)
    if b"\0" in head:
        return True
    try:
        head.decode("utf-8")
    except UnicodeDecodeError as err:
        return err.start < len(head) - 4  # a multi-byte character cut at the sniff boundary is fine
    return False


def iter_files(root: Path) -> Iterator[Path]:
    """Text files under ``root`` in a stable order, skipping VCS, cache and build folders."""
    if root.is_file():
        yield root
        return
    for directory, subdirs, files in os.walk(root):
        subdirs[:] = sorted(d for d in subdirs if d not in _SKIP_DIRS and not d.startswith("."))
        for name in sorted(files):
            path = Path(directory, name)
            if path.is_file() and not path.is_symlink() and not is_binary(path):
                yield path


def chunk_lines(text: str, max_lines: int) -> Iterator[tuple[int, int, str]]:
    """``(first_line, last_line, text)`` windows of at most ``max_lines`` lines (1-based); 0: whole text."""
    lines = text.splitlines(keepends=True)
    if max_lines <= 0 or len(lines) <= max_lines:
        yield 1, max(1, len(lines)), text
        return
    for start in range(0, len(lines), max_lines):
        window = lines[start : start + max_lines]
        yield start + 1, start + len(window), "".join(window)


def check_paths(paths: Iterable[str | Path]) -> list[Path]:
    """The input paths, each checked to exist: a missing one is a :class:`UsageError` before any work."""
    roots = [Path(p) for p in paths]
    for root in roots:
        if not root.exists():
            raise UsageError(f"input path {root} does not exist")
    return roots


def read_paths(roots: Iterable[Path], chunk: int) -> Iterator[Record]:
    """Records from files and directories, read lazily (see :func:`check_paths`)."""
    for root in roots:
        for path in iter_files(root):
            try:
                text = path.read_text(encoding="utf-8", errors="replace")
            except OSError as err:
                raise UsageError(f"cannot read {path}: {err}") from err
            chunks = list(chunk_lines(text, chunk))
            for first, last, body in chunks:
                yield Record(f"{path}:{first}-{last}" if len(chunks) > 1 else str(path), body)


def read_jsonl(handle: IO[str], field: str, id_field: str | None, source: str) -> Iterator[Record]:
    """Records from JSON lines; a bad line is a :class:`UsageError` naming the line."""
    for number, line in enumerate(handle, start=1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as err:
            raise UsageError(f"{source}:{number}: not valid JSON ({err.msg})") from err
        if not isinstance(obj, dict) or not isinstance(obj.get(field), str):
            raise UsageError(f"{source}:{number}: no string field {field!r}")
        record_id = obj.get(id_field) if id_field else None
        yield Record(str(record_id) if record_id is not None else f"{source}:{number}", obj[field])


def read_lines(handle: IO[str], source: str) -> Iterator[Record]:
    """One record per line (newline stripped)."""
    for number, line in enumerate(handle, start=1):
        yield Record(f"{source}:{number}", line.rstrip("\n"))
