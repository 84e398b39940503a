"""`vecsift search`, `vecsift index`, `vecsift status`: the command-line door to :class:`Index`."""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
from typing import Any

from vecsift.backend.precision import AUTO, SUPPORT
from vecsift.cli.options import add_model_option, positive_int
from vecsift.search.code_tokens import words
from vecsift.search.rank import MODES
from vecsift.search.walk import DEFAULT_MAX_FILE_SIZE

SNIPPET_LINES = 4
STATUS_KEYS = ("root", "index_dir", "model", "files", "chunks", "bytes", "last_refresh", "stale_files")


def _index_options(parser: argparse.ArgumentParser) -> None:
    """Options that choose the index and what it holds."""
    parser.add_argument("--index-dir", default=None,
                        help="base folder for indexes (default: $VECSIFT_INDEX_DIR or ~/.cache/vecsift/indexes)")
    parser.add_argument("--repo-local", action="store_true", help="keep the index in PATH/.vecsift/")
    parser.add_argument("--hidden", action="store_true", help="index hidden files and folders too")
    parser.add_argument("--no-ignore", action="store_true",
                        help="do not honour .gitignore, .ignore, .vecsiftignore and .git/info/exclude")
    parser.add_argument("--max-file-size", type=positive_int, default=DEFAULT_MAX_FILE_SIZE,
                        help="skip files larger than this many bytes (default: %(default)s)")
    parser.add_argument("--precision", default=AUTO, choices=(AUTO, *SUPPORT[("cpu", "torch")]),
                        help="precision the index is embedded in (default: auto = bf16 on CPUs with AMX or "
                             "AVX-512 BF16 when its GEMMs beat fp32's and it passes a probe against fp32, "
                             "else fp32)")
    parser.add_argument("--workers", type=positive_int, default=None, help="CPU worker threads for embedding")
    add_model_option(parser)


def add_search_commands(commands: Any) -> None:
    search = commands.add_parser("search", help="search a folder's code by meaning and keywords")
    search.add_argument("query", help="what to look for: a question, words or code")
    search.add_argument("path", nargs="?", default=".", help="folder to search (default: .)")
    search.add_argument("--top-k", "-k", type=positive_int, default=10, help="how many results (default: 10)")
    search.add_argument("--mode", choices=MODES, default="hybrid", help="ranking (default: hybrid)")
    search.add_argument("--threshold", type=float, default=None, help="drop results scoring below this")
    search.add_argument("--lang", default=None, help="only these languages, e.g. py,go,rust")
    search.add_argument("--glob", action="append", default=[],
                        help="only paths matching this glob ('!glob' excludes); repeatable")
    search.add_argument("--files", action="store_true", help="the best files (as many as --top-k), one path per line")
    search.add_argument("--json", action="store_true", help="JSON Lines: one object per result")
    search.add_argument("--content", action="store_true", help="with --json: include the chunk text")
    search.add_argument("--no-refresh", action="store_true", help="answer from the index as it is")
    search.add_argument("--color", choices=("auto", "always", "never"), default="auto")
    _index_options(search)

    index = commands.add_parser("index", help="build or refresh the search index of a folder")
    index.add_argument("path", nargs="?", default=".", help="folder to index (default: .)")
    index.add_argument("--rebuild", action="store_true", help="start from scratch (also repairs a damaged index)")
    index.add_argument("--no-wait", action="store_true", help="fail instead of waiting for another writer")
    index.add_argument("--json", action="store_true", help="print the summary as one JSON object")
    index.add_argument("--verbose", "-v", action="store_true", help="list skipped files")
    _index_options(index)

    watch = commands.add_parser("watch", help="keep the index of a folder fresh while files change (Ctrl-C stops)")
    watch.add_argument("path", nargs="?", default=".", help="folder to watch (default: .)")
    _index_options(watch)

    mcp = commands.add_parser("mcp", help="serve code search to coding agents over MCP (stdio)")
    mcp.add_argument("path", nargs="?", default=".", help="repository root (default: .)")
    mcp.add_argument("--max-chars", type=positive_int, default=20_000,
                     help="character budget of one answer; chunk texts are shortened to fit (default: %(default)s)")
    _index_options(mcp)

    status = commands.add_parser("status", help="what the index of a folder holds and how fresh it is")
    status.add_argument("path", nargs="?", default=".", help="indexed folder (default: .)")
    status.add_argument("--json", action="store_true", help="print JSON")
    _index_options(status)


def _index_settings(args: argparse.Namespace) -> dict[str, Any]:
    """The ``Index`` keyword arguments that ``_index_options`` put on the command line."""
    return {"model": args.model, "index_dir": args.index_dir, "repo_local": args.repo_local,
            "precision": args.precision, "workers": args.workers, "hidden": args.hidden,
            "ignore_files": not args.no_ignore, "max_file_size": args.max_file_size}


def _open_index(args: argparse.Namespace):
    from vecsift.search import Index

    return Index(args.path, **_index_settings(args))


def run_index(args: argparse.Namespace) -> int:
    with _open_index(args) as index:
        print(f"vecsift: indexing {index.root} into {index.directory}", file=sys.stderr)
        summary = index.refresh(rebuild=args.rebuild, wait=not args.no_wait, progress=True)
    if args.verbose:
        for path, reason in summary.skipped:
            print(f"vecsift: skipped {path}: {reason}", file=sys.stderr)
    if args.json:
        keys = ("files_added", "files_changed", "files_removed", "chunks_embedded", "chunks_reused", "seconds")
        print(json.dumps({k: summary.as_dict()[k] for k in keys}))
    else:
        print(f"vecsift: {summary.line()}" + (f" (rebuilt: {summary.rebuilt})" if summary.rebuilt else ""),
              file=sys.stderr)
    return 0


def run_watch(args: argparse.Namespace) -> int:
    from vecsift.search.watch import watch

    with _open_index(args) as index:
        print(f"vecsift: watching {index.root} (index at {index.directory}); Ctrl-C stops", file=sys.stderr)
        try:
            watch(index, on_refresh=lambda summary: print(f"vecsift: {summary.line()}", file=sys.stderr))
        except KeyboardInterrupt:
            print("vecsift: stopped watching; the index is up to date as of the last refresh", file=sys.stderr)
    return 0


def run_mcp(args: argparse.Namespace) -> int:
    from vecsift.errors import UsageError

    try:
        from vecsift.mcp_server import serve
    except ImportError as err:
        raise UsageError(f"`vecsift mcp` needs the MCP SDK ({err.name} is missing): pip install 'vecsift[mcp]'") \
            from err

    serve(args.path, max_chars=args.max_chars, **_index_settings(args))
    return 0


def run_status(args: argparse.Namespace) -> int:
    with _open_index(args) as index:
        facts = index.status()
    if args.json:
        print(json.dumps({k: facts[k] for k in STATUS_KEYS}))
    else:
        width = max(len(k) for k in facts)
        for key, value in facts.items():
            print(f"{key:<{width}}  {value}")
    return 0


def run_search(args: argparse.Namespace) -> int:
    from vecsift.errors import UsageError
    from vecsift.search.index import check_search_arguments

    if args.content and not args.json:
        raise UsageError("--content goes with --json")
    check_search_arguments(args.query, args.top_k, args.mode, args.lang)
    with _open_index(args) as index:
        if not args.no_refresh:
            summary = index.ensure_fresh(progress=True)
            if summary is not None and (summary.chunks_embedded or summary.files_removed or summary.rebuilt):
                print(f"vecsift: index refreshed: {summary.line()}", file=sys.stderr)
        results = index.search(args.query, top_k=args.top_k, mode=args.mode, threshold=args.threshold,
                               languages=args.lang, globs=tuple(args.glob), refresh=False, per_file=args.files)
        if not results and index.status()["files"] == 0:
            print(f"vecsift: no indexable files under {index.root} (see `vecsift index -v` for what was skipped)",
                  file=sys.stderr)
            return 1
    if not results:
        print("vecsift: no results", file=sys.stderr)
        return 0
    if args.json:
        for hit in results:
            print(json.dumps(hit.as_dict(content=args.content), ensure_ascii=False))
    elif args.files:
        for hit in results:
            print(hit.path)
    else:
        _print_human(results, args.query, _use_color(args.color))
    return 0


def _use_color(choice: str) -> bool:
    if choice != "auto":
        return choice == "always"
    return sys.stdout.isatty() and not os.environ.get("NO_COLOR")


def _paint(text: str, code: str, color: bool) -> str:
    return f"\x1b[{code}m{text}\x1b[0m" if color else text


def best_lines(text: str, query: str, count: int = SNIPPET_LINES) -> list[tuple[int, str]]:
    """Up to ``count`` consecutive lines (offset, line) around the line sharing most words with the query."""
    lines = text.split("\n")
    wanted = set(words(query))
    scores = [len(wanted & set(words(line))) for line in lines]
    best = max(range(len(lines)), key=lambda i: (scores[i], -i)) if any(scores) else 0
    start = max(0, min(best - 1, len(lines) - count))
    return list(enumerate(lines))[start:start + count]


def _print_human(results, query: str, color: bool) -> None:
    wanted = set(words(query))
    pattern = re.compile(r"\w+")
    for hit in results:
        label = f"{hit.kind} {hit.scope or hit.name}".strip()
        print(f"{_paint(hit.path, '35', color)}:{_paint(f'{hit.start_line}-{hit.end_line}', '32', color)}"
              f"  {hit.score:.4f}  {label}")
        for offset, line in best_lines(hit.text, query):
            shown = line.rstrip()[:200]
            if color:
                shown = pattern.sub(lambda m: _paint(m.group(), "1;31", True) if m.group().lower() in wanted
                                    else m.group(), shown)
            print(f"  {_paint(str(hit.start_line + offset).rjust(5), '32', color)}│ {shown}")
        print()
