"""`vecsift mcp`: code search for coding agents, over the Model Context Protocol on stdio.

A front door over :class:`vecsift.search.Index`, like the command line: the index of
the root is built on the first call and refreshed (stat only, then what changed)
before each search. Answers are sized for an agent's context: chunk texts are cut to
fit a character budget (results are never dropped for it) and the answer says so.
Every path an agent passes is confined to the root. Errors come back as tool errors
with a message naming what was wrong; the server itself keeps running.

stdout is the protocol channel: nothing else may be printed there (vecsift's own
messages go to stderr).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field  # comes with the MCP SDK; module-level so the SDK can resolve the tools' annotations

from vecsift.errors import UsageError, VecsiftError
from vecsift.search.index import Index, SearchResult

DEFAULT_MAX_CHARS = 20_000  # per answer: about 5k tokens of an agent's context
MIN_TEXT_CHARS = 120  # a shortened chunk text keeps at least this much
INSTRUCTIONS = (
    "Semantic + keyword code search over one repository. Use search_code with a natural-language "
    "question or an identifier to find where something is implemented; find_similar to find code like a "
    "given location; find_duplicates for copy-pasted code. Paths are relative to the repository root and "
    "lines are 1-based and inclusive."
)


def confine(root: Path, path: str) -> str:
    """``path`` (relative to ``root``, or absolute) as a root-relative path; refused if it leaves the root."""
    if not isinstance(path, str) or not path.strip() or "\0" in path:
        raise UsageError(f"path must be a non-empty file path, got {path!r}")
    given = Path(path)
    resolved = (given if given.is_absolute() else root / given).resolve()  # follows links and '..'
    if resolved != root and root not in resolved.parents:
        raise UsageError(f"path {path!r} is outside the searched root {root}; give a path inside it")
    return resolved.relative_to(root).as_posix()


def _shorten(text: str, limit: int) -> str:
    if len(text) <= limit:
        return text
    kept = text[:limit].rsplit("\n", 1)[0] if "\n" in text[:limit] else text[:limit]
    return f"{kept}\n… ({text.count(chr(10)) - kept.count(chr(10))} more lines)"


def fit(items: list[dict[str, Any]], max_chars: int) -> tuple[list[dict[str, Any]], bool]:
    """Shorten the ``text`` of every item evenly so all texts together fit ``max_chars``; (items, shortened)."""
    total = sum(len(item.get("text", "")) for item in items)
    if total <= max_chars or not items:
        return items, False
    share = max(MIN_TEXT_CHARS, max_chars // len(items))
    return [{**item, "text": _shorten(item["text"], share)} if "text" in item else item for item in items], True


def _result(hit: SearchResult) -> dict[str, Any]:
    return {"path": hit.path, "start_line": hit.start_line, "end_line": hit.end_line, "score": hit.score,
            "kind": hit.kind, "name": hit.scope or hit.name, "text": hit.text}


@contextlib.contextmanager
def _as_tool_errors() -> Iterator[None]:
    from mcp.server.mcpserver.exceptions import ToolError

    try:
        yield
    except VecsiftError as err:
        raise ToolError(str(err)) from err
    except OSError as err:
        raise ToolError(f"{err.strerror or err}: {err.filename or ''}".rstrip(": ")) from err


def build_server(index: Index, max_chars: int = DEFAULT_MAX_CHARS):
    """An MCP server with the search tools over ``index``."""
    from mcp.server.mcpserver import MCPServer

    server = MCPServer("vecsift", instructions=INSTRUCTIONS)

    def answer(results: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
        fitted, shortened = fit(results, max_chars)
        note = (f"chunk texts were shortened to fit {max_chars} characters; read the file for the full text "
                "or ask for fewer results") if shortened else None
        return {"results": fitted, "truncated": shortened, **({"note": note} if note else {}), **extra}

    @server.tool()
    def search_code(
        query: Annotated[str, Field(description="What to find: a question in plain words, an identifier, or code")],
        top_k: Annotated[int, Field(ge=1, le=50, description="How many results (1-50)")] = 10,
        mode: Annotated[Literal["hybrid", "semantic", "keyword"],
                        Field(description="hybrid (default) fuses keyword and semantic ranking")] = "hybrid",
        lang: Annotated[str | None, Field(description="Only these languages, comma-separated, e.g. 'py,go'")] = None,
        glob: Annotated[str | None, Field(description="Only paths matching this glob, e.g. 'src/**/*.ts'")] = None,
        files: Annotated[bool, Field(description="One result per file: the best chunk of each of the top_k "
                                                 "best files (which files to open)")] = False,
    ) -> dict[str, Any]:
        """Search the repository's code by meaning and keywords. Returns the best-matching chunks (functions,
        classes, sections) with path, 1-based start_line/end_line, score, kind, qualified name and text."""
        with _as_tool_errors():
            hits = index.search(query, top_k=top_k, mode=mode, languages=lang, globs=(glob,) if glob else (),
                                per_file=files)
        return answer([_result(h) for h in hits])

    @server.tool()
    def find_similar(
        path: Annotated[str, Field(description="File path relative to the repository root")],
        line: Annotated[int, Field(ge=1, description="A 1-based line inside the code to compare")],
        top_k: Annotated[int, Field(ge=1, le=50, description="How many results (1-50)")] = 10,
    ) -> dict[str, Any]:
        """Find the code most similar to the chunk that contains path:line (that chunk itself excluded)."""
        with _as_tool_errors():
            relative = confine(index.root, path)
            index.ensure_fresh()
            hits = index.find_similar(relative, line, top_k=top_k)
        return answer([_result(h) for h in hits])

    @server.tool()
    def find_duplicates(
        threshold: Annotated[float, Field(gt=0, le=1, description="Minimum cosine similarity (0-1]")] = 0.95,
        limit: Annotated[int, Field(ge=1, le=200, description="How many pairs at most (1-200)")] = 50,
    ) -> dict[str, Any]:
        """Find pairs of near-duplicate chunks across the repository (copy-pasted or nearly identical code),
        most similar first."""
        with _as_tool_errors():
            index.ensure_fresh()
            pairs = index.find_duplicates(threshold=threshold, limit=limit)
        flat = [_result(hit) for pair in pairs for hit in pair]
        fitted, shortened = fit(flat, max_chars)
        pairs_out = [{"similarity": pairs[i][0].score, "a": fitted[2 * i], "b": fitted[2 * i + 1]}
                     for i in range(len(pairs))]
        for pair in pairs_out:
            pair["a"].pop("score")
            pair["b"].pop("score")
        return {"pairs": pairs_out, "truncated": shortened,
                **({"note": f"chunk texts were shortened to fit {max_chars} characters"} if shortened else {})}

    @server.tool()
    def index_status() -> dict[str, Any]:
        """What the index holds: root, index folder, model, files, chunks, bytes on disk, last refresh, and how
        many files changed since (stale_files)."""
        with _as_tool_errors():
            return index.status()

    @server.tool()
    def reindex(
        full: Annotated[bool, Field(description="Rebuild from scratch instead of refreshing what changed")] = False,
    ) -> dict[str, Any]:
        """Refresh the index now (only changed files are re-read and re-embedded), or rebuild it with full=true."""
        with _as_tool_errors():
            summary = index.refresh(rebuild=full)
        data = summary.as_dict()
        data.pop("skipped")
        return data

    return server


def serve(root: str | os.PathLike[str], *, max_chars: int = DEFAULT_MAX_CHARS, **index_options: Any) -> None:
    """Run the server on stdio until the client closes it."""
    if max_chars < 1000:
        raise UsageError(f"--max-chars must be at least 1000, got {max_chars}")
    with Index(root, **index_options) as index:
        build_server(index, max_chars).run("stdio")
