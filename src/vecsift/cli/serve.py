"""`vecsift serve`: the embedding (and code search) server on the command line."""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

from vecsift.cli.options import add_engine_options, positive_int


def add_serve_command(commands: Any) -> None:
    serve = commands.add_parser("serve", help="serve embeddings over HTTP (TEI- and OpenAI-compatible) and search")
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on (default: 127.0.0.1, this machine)")
    serve.add_argument("--port", type=int, default=8080, help="port (default: 8080; 0 picks a free one)")
    add_engine_options(serve, precision="auto")
    serve.add_argument("--workers", type=positive_int, default=None, help="CPU worker threads (default: cores)")
    serve.add_argument("--batch-size", type=positive_int, default=32, help="inputs per unit of work (default: 32)")
    serve.add_argument("--max-batch-tokens", type=positive_int, default=16384,
                       help="token budget of one batch across requests (default: %(default)s)")
    serve.add_argument("--max-concurrent-requests", type=positive_int, default=512,
                       help="inputs admitted at once; more are refused at once (default: %(default)s)")
    serve.add_argument("--max-client-batch-size", type=positive_int, default=32,
                       help="inputs one request may carry (default: %(default)s)")
    serve.add_argument("--payload-limit", type=positive_int, default=2_000_000,
                       help="bytes one request body may have (default: %(default)s)")
    serve.add_argument("--overload-status", type=int, choices=(429, 503), default=429,
                       help="status when overloaded (default: 429)")
    serve.add_argument("--tokenization-workers", type=positive_int, default=2,
                       help="threads that tokenize requests off the event loop, each taking every request queued "
                            "since its last round (default: %(default)s)")
    serve.add_argument("--api-key", default=os.environ.get("VECSIFT_API_KEY"),
                       help="require `Authorization: Bearer KEY` (default: $VECSIFT_API_KEY; none: open)")
    serve.add_argument("--index", default=None, metavar="PATH", help="also serve POST /search over this folder")
    serve.add_argument("--in-process-lanes", action="store_true",
                       help="compute on the CPU in threads of the server process (less memory; slower under load, "
                            "where the forward passes and the HTTP work share one GIL)")


def run_serve(args: argparse.Namespace) -> int:
    from vecsift.embedder import Embedder
    from vecsift.errors import UsageError

    try:
        from vecsift.server.app import ServerSettings, create_app
        from vecsift.server.run import bind, run
    except ImportError as err:
        raise UsageError(f"`vecsift serve` needs the server extra ({err.name} is missing): "
                         "pip install 'vecsift[server]'") from err
    if not 0 <= args.port <= 65535:
        raise UsageError(f"--port must be from 0 to 65535, got {args.port}")
    embedder = Embedder(args.model, kind=args.kind, driver=args.driver, precision=args.precision,
                        batch_size=args.batch_size, workers=args.workers)
    index = None
    if args.index:
        from vecsift.search import Index

        index = Index(args.index, model=args.model)
    settings = ServerSettings(
        model_id=args.model, max_batch_tokens=args.max_batch_tokens,
        max_concurrent_requests=args.max_concurrent_requests, max_client_batch_size=args.max_client_batch_size,
        payload_limit=args.payload_limit, api_key=args.api_key, overload_status=args.overload_status,
        tokenization_workers=args.tokenization_workers, batch_size=args.batch_size, workers=args.workers,
        lane_processes=not args.in_process_lanes)
    try:
        sock = bind(args.host, args.port)
    except OSError as err:
        raise UsageError(f"cannot listen on {args.host}:{args.port}: {err.strerror or err}") from err
    print(f"vecsift: {args.model} on {', '.join(b.name() for b in embedder.backends)}, dim {embedder.dim}",
          file=sys.stderr)
    try:
        app = create_app(embedder, settings, index, start_now=True)  # lanes that cannot start: an error here
    except BaseException:
        sock.close()
        raise
    run(app, sock)
    return 0
