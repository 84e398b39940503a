"""Real source code to measure and test on, everywhere vecsift runs: the running interpreter's stdlib."""

from __future__ import annotations

import sysconfig
from pathlib import Path

from vecsift.sources import chunk_lines


def stdlib_chunks(count: int, lines_per_chunk: int = 40) -> list[str]:
    """``count`` chunks of Python source, deterministic for a given interpreter."""
    root = Path(sysconfig.get_paths()["stdlib"])
    chunks: list[str] = []
    for path in sorted(root.glob("*.py")):
        text = path.read_text(encoding="utf-8", errors="replace")
        chunks.extend(body for _, _, body in chunk_lines(text, lines_per_chunk) if body.strip())
        if len(chunks) >= count:
            return chunks[:count]
    raise ValueError(f"only {len(chunks)} chunks of source found under {root}, {count} asked for")
