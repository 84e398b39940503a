"""Reading texts to embed: files and directories (walked as code search walks them), JSONL, lines."""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from vecsift.errors import UsageError
from vecsift.search.walk import Skipped, WalkedFile, WalkOptions, check_root, read_source, walk


@dataclass(frozen=True)
class Record:
    """One text to embed and where it came from."""

    id: str
    text: str


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


def _text_files(root: Path, skipped: Skipped) -> Iterator[tuple[str, str]]:
    """(id prefix, text) of every indexable file under ``root`` (or ``root`` itself), by the search walker's rules:
    ignore files honoured, binary, non-UTF-8, oversized and unreadable files skipped with their reason."""
    if root.is_file():
        stat = root.stat()
        candidates = [WalkedFile(root.name, root, stat.st_size, stat.st_mtime_ns)]
        label = {root.name: str(root)}
    else:
        candidates = list(walk(check_root(root), WalkOptions(),
                               on_skip=lambda path, reason: skipped.add(str(root / path), reason)))
        label = {f.path: str(root / f.path) for f in candidates}
    for file in candidates:
        try:
            _, text, reason = read_source(file)
        except OSError as err:
            skipped.add(label[file.path], f"cannot be read ({err.strerror or err})")
            continue
        if text is None:
            skipped.add(label[file.path], str(reason))
            continue
        yield label[file.path], text


def read_paths(roots: Iterable[Path], chunk: int, skipped: Skipped | None = None) -> Iterator[Record]:
    """Records from files and directories, read lazily (see :func:`check_paths`); what is passed over, and why,
    goes to ``skipped``."""
    skipped = skipped if skipped is not None else Skipped()
    for root in roots:
        for prefix, text in _text_files(root, skipped):
            chunks = list(chunk_lines(text, chunk))
            for first, last, body in chunks:
                yield Record(f"{prefix}:{first}-{last}" if len(chunks) > 1 else prefix, body)


def decoded_lines(handle: IO[bytes], source: str) -> Iterator[tuple[int, str]]:
    """``(line number, text)`` of a binary stream, decoded line by line so that invalid UTF-8 is a
    :class:`UsageError` naming its line (a text stream would fail somewhere in a block, unnamed)."""
    for number, raw in enumerate(handle, start=1):
        try:
            yield number, raw.decode("utf-8")
        except UnicodeDecodeError as err:
            raise UsageError(f"{source}:{number}: not valid UTF-8 (byte {err.start + 1} of the line)") from None


def read_jsonl(handle: IO[bytes], field: str, id_field: str | None, source: str) -> Iterator[Record]:
    """Records from JSON lines; a bad line is a :class:`UsageError` naming the line (and its id when it has one)."""
    for number, line in decoded_lines(handle, source):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as err:
            raise UsageError(f"{source}:{number}: not valid JSON ({err.msg})") from err
        if not isinstance(obj, dict):
            raise UsageError(f"{source}:{number}: a JSON {type(obj).__name__}, not an object")
        if id_field is not None and obj.get(id_field) is None:
            raise UsageError(f"{source}:{number}: no field {id_field!r} for the record id (--id-field)")
        record_id = str(obj[id_field]) if id_field is not None else f"{source}:{number}"
        if not isinstance(obj.get(field), str):
            problem = "missing" if obj.get(field) is None else f"a {type(obj[field]).__name__}, not a string"
            named = f" (id {record_id!r})" if id_field is not None else ""
            raise UsageError(f"{source}:{number}{named}: field {field!r} is {problem}")
        yield Record(record_id, obj[field])


def read_lines(handle: IO[bytes], source: str) -> Iterator[Record]:
    """One record per line (line ending stripped)."""
    for number, line in decoded_lines(handle, source):
        yield Record(f"{source}:{number}", line.rstrip("\r\n"))
