"""`vecsift` command line: ``search``/``index``/``status`` a folder's code; ``embed`` texts, files or JSONL;
``info`` about a model and backend."""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
import time
from collections import deque
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from vecsift import __version__
from vecsift.cli.entry import Terminated, _terminate
from vecsift.cli.options import add_engine_options, positive_int, token_limit
from vecsift.cli.output import FORMATS, check_output_folder, infer_format, open_writer
from vecsift.cli.ray_embed import add_ray_options, check_ray_arguments, run_ray_embed
from vecsift.cli.search import add_search_commands, run_index, run_mcp, run_search, run_status, run_watch
from vecsift.cli.serve import add_serve_command, run_serve
from vecsift.errors import UsageError, VecsiftError
from vecsift.interrupts import interrupts_held
from vecsift.search.walk import Skipped
from vecsift.sources import Record, check_paths, read_jsonl, read_lines, read_paths

if TYPE_CHECKING:
    from vecsift.embedder import Embedder


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="vecsift",
                                     description="Search code by meaning; embed text and source code with BERT-family "
                                                 "models.")
    parser.add_argument("--version", action="version", version=f"vecsift {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)
    add_search_commands(commands)
    add_serve_command(commands)

    embed = commands.add_parser("embed", help="embed files, directories, JSONL or stdin lines")
    embed.add_argument("inputs", nargs="*", help="files or directories ('-' or none: lines of stdin)")
    embed.add_argument("--jsonl", metavar="FILE", help="read records from a JSONL file ('-' for stdin)")
    embed.add_argument("--field", default="text", help="JSONL field holding the text (default: text)")
    embed.add_argument("--id-field", default=None, help="JSONL field to use as the record id")
    embed.add_argument("--output", "-o", default=None, help="output file (.npy or .jsonl); default JSONL on stdout")
    embed.add_argument("--format", choices=FORMATS, default=None, help="output format (default: from the suffix)")
    embed.add_argument("--chunk-lines", type=int, default=40,
                       help="split files into windows of this many lines; 0 embeds each file whole (default: 40)")
    embed.add_argument("--batch-size", type=positive_int, default=32)
    embed.add_argument("--workers", type=positive_int, default=None, help="CPU worker threads (default: cores)")
    embed.add_argument("--max-tokens", type=token_limit, default=None,
                       help="truncate inputs to this many tokens (at least 2)")
    embed.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
    embed.add_argument("--verbose", "-v", action="store_true", help="list the files that were skipped, and why")
    add_engine_options(embed, precision="fp32")
    add_ray_options(embed)

    info = commands.add_parser("info", help="describe a model and the backend that would run it")
    info.add_argument("--json", action="store_true", help="print JSON")
    add_engine_options(info, precision="fp32")
    return parser


def _records(args: argparse.Namespace, skipped: Skipped) -> Iterator[Record]:
    """The records to embed, read lazily; missing inputs and options that do not apply are reported before
    anything runs."""
    if not args.jsonl and (args.field != "text" or args.id_field is not None):
        raise UsageError("--field and --id-field apply to --jsonl input only")
    roots = check_paths(p for p in args.inputs if p != "-")
    if args.jsonl and args.jsonl != "-" and not Path(args.jsonl).is_file():
        raise UsageError(f"JSONL input {args.jsonl} does not exist")

    def generate() -> Iterator[Record]:
        if args.jsonl == "-":
            yield from read_jsonl(sys.stdin.buffer, args.field, args.id_field, "<stdin>")
        elif args.jsonl:
            with open(args.jsonl, "rb") as handle:
                yield from read_jsonl(handle, args.field, args.id_field, args.jsonl)
        yield from read_paths(roots, args.chunk_lines, skipped)
        if "-" in args.inputs or (not args.inputs and not args.jsonl):
            yield from read_lines(sys.stdin.buffer, "<stdin>")

    return generate()


def _embedder(args: argparse.Namespace, **options: int | None) -> Embedder:
    """The engine the options name, its modules imported with Ctrl-C held back (a signal inside the import
    machinery is lost in a callback or marks the process to kill itself at exit: :mod:`vecsift.interrupts`)."""
    with interrupts_held():
        from vecsift.embedder import Embedder
    return Embedder(args.model, kind=args.kind, driver=args.driver, precision=args.precision, **options)


def _embed(args: argparse.Namespace) -> int:
    check_ray_arguments(args)
    if args.engine == "ray":
        return run_ray_embed(args)
    skipped = Skipped()
    records = _records(args, skipped)
    fmt = infer_format(args.output, args.format)
    check_output_folder(args.output)  # before the model loads
    embedder = _embedder(args, batch_size=args.batch_size, workers=args.workers, max_tokens=args.max_tokens)
    ids: deque[str] = deque()  # ids of texts pulled but not yet written, in order

    def texts() -> Iterator[str]:
        for record in records:
            ids.append(record.id)
            yield record.text

    started = time.perf_counter()
    with open_writer(args.output, fmt, embedder.dim) as writer, \
            embedder.embed_stream(texts(), progress=not args.no_progress) as stream:
        for vector in stream:
            writer.write(ids.popleft(), vector)
    elapsed = max(time.perf_counter() - started, 1e-9)
    written = writer.paths
    print(
        f"vecsift: embedded {writer.rows} texts ({stream.tokens} tokens; {stream.truncated} texts truncated at "
        f"{embedder.max_tokens} tokens) "
        f"with {args.model} on {', '.join(b.name() for b in embedder.backends)} in {elapsed:.2f} s: "
        f"{writer.rows / elapsed:.1f} texts/s, {stream.tokens / elapsed:.0f} tokens/s; "
        f"dim {embedder.dim}; {len(skipped.entries)} files skipped"
        + (f"; wrote {', '.join(written)}" if written else ""),
        file=sys.stderr,
    )
    named = {str(Path(p)) for p in args.inputs}
    for path, reason in skipped.entries:  # a file named on the command line is always reported; others with -v
        if args.verbose or path in named:
            print(f"vecsift: skipped {path}: {reason}", file=sys.stderr)
    return 0


def _info(args: argparse.Namespace) -> int:
    facts = _embedder(args).describe()
    if args.json:
        print(json.dumps(facts, indent=2))
    else:
        width = max(len(k) for k in facts)
        for key, value in facts.items():
            print(f"{key:<{width}}  {value}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    previous = signal.signal(signal.SIGTERM, _terminate) if threading.current_thread() is threading.main_thread() \
        else None
    command = None
    try:
        args = build_parser().parse_args(argv)  # inside: a Ctrl-C while the parser is built is one line too
        command = args.command
        handler = {"embed": _embed, "info": _info, "search": run_search, "index": run_index, "status": run_status,
                   "watch": run_watch, "mcp": run_mcp, "serve": run_serve}
        return handler[command](args)
    except VecsiftError as err:
        print(f"vecsift: error: {err}", file=sys.stderr)
        return 1
    except OSError as err:
        print(f"vecsift: error: {err}", file=sys.stderr)
        return 1
    except KeyboardInterrupt as stop:
        terminated = isinstance(stop, Terminated)
        print(f"vecsift: {'terminated' if terminated else 'interrupted'}"
              + ("; no output was written" if command == "embed" else ""), file=sys.stderr)
        return 143 if terminated else 130
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


if __name__ == "__main__":
    sys.exit(main())
