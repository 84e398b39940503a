"""`vecsift embed --engine ray`: the command-line face of :mod:`vecsift.ray.job`."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from vecsift.cli.options import positive_int
from vecsift.errors import UsageError

#: options of one engine only, with how the command line names them
_RAY_ONLY = {"address": "--address", "actors": "--actors"}
_LOCAL_ONLY = {"jsonl": "--jsonl", "format": "--format", "chunk_lines": "--chunk-lines", "verbose": "--verbose"}


def add_ray_options(embed: argparse.ArgumentParser) -> None:
    """The engine options; added last, so the defaults of every engine-specific option are known."""
    group = embed.add_argument_group("Ray engine (--engine ray; needs vecsift[ray])")
    group.add_argument("--engine", choices=("local", "ray"), default="local",
                       help="local: this process (default); ray: a Ray Data job, JSONL/Parquet in, Parquet out")
    group.add_argument("--address", default="local",
                       help="Ray cluster: local (start one here, default), auto (the one `ray start` runs here), "
                            "HOST:PORT or ray://HOST:PORT")
    group.add_argument("--actors", type=positive_int, default=None,
                       help="embedding actors (default: one per CPU node, or one per GPU with --backend cuda)")
    embed.set_defaults(engine_option_defaults={dest: embed.get_default(dest) for dest in _RAY_ONLY | _LOCAL_ONLY})


def check_ray_arguments(args: argparse.Namespace) -> None:
    """Options that mean nothing to the chosen engine are errors, not silently ignored."""
    defaults = args.engine_option_defaults
    if args.engine == "local":
        for dest, option in _RAY_ONLY.items():
            if getattr(args, dest) != defaults[dest]:
                raise UsageError(f"{option} applies to --engine ray only")
        return
    for dest, option in _LOCAL_ONLY.items():
        if getattr(args, dest) != defaults[dest]:
            raise UsageError(f"{option} does not apply to --engine ray (inputs are JSONL/Parquet files; "
                             "output is a directory of Parquet shards)")
    if not args.inputs or "-" in args.inputs:
        raise UsageError("--engine ray reads files: name JSONL/Parquet files, directories or globs (not stdin)")
    if not args.output or args.output == "-":
        raise UsageError("--engine ray writes a directory of Parquet shards: pass -o OUTPUT_DIR")
    if args.kind == "auto":
        raise UsageError("--engine ray needs --backend cpu or cuda (it picks actors by the kind of device)")


def run_ray_embed(args: argparse.Namespace) -> int:
    try:
        from vecsift.ray.cluster import ray_cluster
        from vecsift.ray.dataset import plan_actors
        from vecsift.ray.job import EmbedJob, check_output_directory, run_embed_job
        from vecsift.ray.reading import input_files
    except ImportError as err:
        raise UsageError(f"--engine ray needs Ray Data: pip install 'vecsift[ray]' ({err})") from None

    job = EmbedJob(args.inputs, Path(args.output), args.model, field=args.field, id_field=args.id_field,
                   kind=args.kind, driver=args.driver, precision=args.precision, batch_size=args.batch_size,
                   max_tokens=args.max_tokens, progress=not args.no_progress)
    files = input_files(job.inputs)  # bad inputs and outputs fail before a cluster starts
    check_output_directory(job.output)
    with ray_cluster(args.address):
        plan = plan_actors(job.kind, actors=args.actors, workers=args.workers)
        report = run_embed_job(job, files, plan)
    print(f"vecsift: embedded {report.rows} texts with {args.model} on Ray ({plan.actors} {job.kind} actors) in "
          f"{report.seconds:.2f} s: {report.rows / max(report.seconds, 1e-9):.1f} texts/s; dim {report.dim}; "
          f"wrote {len(report.files)} Parquet files to {job.output}", file=sys.stderr)
    return 0
