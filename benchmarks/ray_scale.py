"""vecsift on Ray Data against vecsift in one process and against the sentence-transformers recipe on Ray.

The same stdlib chunks (JSONL on disk) go through:
- vecsift, one process: ``Embedder.embed`` on the texts (the ceiling: no reading, no writing, no Ray);
- vecsift on Ray: the ``vecsift embed --engine ray`` job (read JSONL → ``EmbedBatches`` actors → Parquet)
  on a local cluster with the default actor plan;
- the recipe a user would write: the same read and write around a ``map_batches`` class that calls
  ``SentenceTransformer.encode`` (torch given every core: the recipe's best case).

Ray's costs are split: cluster start (``ray.init``), a fixed cost per job (actor start, model load,
pipeline spin-up) and steady-state throughput. Each Ray engine runs at two corpus sizes; the fixed cost is
the intercept and steady-state throughput the slope of time against chunks. Runs alternate, medians of
``--repeats``.

    python -m benchmarks.ray_scale [--write] [--chunks 10000] [--repeats 3]
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import ray

from benchmarks.shared import alternate, benchmark_arguments, describe_machine, markdown_table, write_section
from vecsift import Embedder
from vecsift.models import bundled_model_dir
from vecsift.ray import embed_dataset, plan_actors
from vecsift.ray.dataset import CPU_ROWS_PER_CALL
from vecsift.ray.reading import READ_CPUS, read_records
from vecsift.stdlib_corpus import stdlib_chunks

MODEL = "all-MiniLM-L6-v2"


class SentenceTransformersRecipe:
    """The map_batches class from Ray's and sentence-transformers' docs, with torch on every core."""

    def __init__(self, model_dir: str, batch_size: int, max_tokens: int) -> None:
        import torch
        from sentence_transformers import SentenceTransformer

        torch.set_num_threads(os.cpu_count() or 1)
        self.model = SentenceTransformer(model_dir, device="cpu")
        self.model.max_seq_length = max_tokens
        self.batch_size = batch_size

    def __call__(self, batch: dict) -> dict:
        batch["embedding"] = self.model.encode(list(batch["text"]), batch_size=self.batch_size,
                                               normalize_embeddings=True)
        return batch


def ray_job(source: Path, work: Path, engine: str, batch_size: int, max_tokens: int) -> float:
    """One Ray job, JSONL to Parquet; returns rows written (checked against the input)."""
    out = Path(tempfile.mkdtemp(dir=work))
    records = read_records([source])
    if engine == "vecsift":
        embedded = embed_dataset(records, MODEL, batch_size=batch_size, max_tokens=max_tokens)
    else:
        plan = plan_actors("cpu")
        embedded = records.map_batches(
            SentenceTransformersRecipe, fn_constructor_args=(str(bundled_model_dir()), batch_size, max_tokens),
            batch_format="numpy", compute=ray.data.ActorPoolStrategy(size=1), num_cpus=plan.cpus_per_actor,
            batch_size=CPU_ROWS_PER_CALL)
    embedded.select_columns(["id", "embedding"]).write_parquet(str(out), ray_remote_args={"num_cpus": READ_CPUS})
    import pyarrow.parquet as pq

    rows = pq.read_table(out, columns=["id"]).num_rows
    shutil.rmtree(out)
    return rows


def main() -> None:
    parser = benchmark_arguments(__doc__.splitlines()[0], chunks=10_000, repeats=3, batch_size=32)
    parser.add_argument("--lines", type=int, default=5, help="lines per chunk (default: 5)")
    args = parser.parse_args()
    texts = stdlib_chunks(args.chunks, args.lines)
    small = args.chunks // 5
    work = Path(tempfile.mkdtemp(prefix="vecsift-ray-bench-"))
    sources = {}
    for size in (small, args.chunks):
        sources[size] = work / f"chunks-{size}.jsonl"
        with open(sources[size], "w", encoding="utf-8") as handle:
            for text in texts[:size]:
                handle.write(json.dumps({"text": text}) + "\n")

    started = time.perf_counter()
    ray.init(num_cpus=os.cpu_count(), include_dashboard=False, logging_level="WARNING")
    cluster_start = time.perf_counter() - started
    ray.data.DataContext.get_current().enable_progress_bars = False
    embedder = Embedder(MODEL, batch_size=args.batch_size, max_tokens=args.max_tokens)
    engines = {"vecsift, one process": lambda: len(embedder.embed(texts))}
    for engine in ("vecsift", "sentence-transformers"):
        for size in (small, args.chunks):
            engines[f"{engine} on Ray, {size}"] = (
                lambda e=engine, s=size: ray_job(sources[s], work, e, args.batch_size, args.max_tokens))
    try:
        runs, outputs = alternate(engines, args.repeats)
    finally:
        ray.shutdown()
        shutil.rmtree(work, ignore_errors=True)
    for name, rows in outputs.items():
        expected = small if name.endswith(f", {small}") else args.chunks
        assert rows == expected, (name, rows, expected)

    median = {name: statistics.median(samples) for name, samples in runs.items()}
    ceiling = args.chunks / median["vecsift, one process"]
    rows = [("vecsift, one process", "–", f"{median['vecsift, one process']:.1f}", f"{ceiling:.0f}", "1.00")]
    steady = {}
    for engine in ("vecsift", "sentence-transformers"):
        big, little = median[f"{engine} on Ray, {args.chunks}"], median[f"{engine} on Ray, {small}"]
        steady[engine] = (args.chunks - small) / (big - little)
        fixed = big - args.chunks / steady[engine]
        rows.append((f"{engine} on Ray", f"{fixed:.1f}", f"{big:.1f}", f"{steady[engine]:.0f}",
                     f"{steady[engine] / ceiling:.2f}"))
    plan = plan_actors.__name__
    body = "\n".join([
        f"Machine: {describe_machine()}.",
        f"Corpus: {args.chunks} stdlib chunks of {args.lines} lines (JSONL), truncated at {args.max_tokens} tokens, "
        f"{MODEL} fp32, batch size {args.batch_size}; Ray {ray.__version__}, a local cluster of {os.cpu_count()} "
        f"CPUs started in {cluster_start:.1f} s (`ray.init`). Medians of {args.repeats} alternating runs.",
        "",
        f"Steady state is the slope of job time between {small} and {args.chunks} chunks; the fixed cost per job "
        "(actor start, model load, pipeline spin-up) is the intercept. vecsift on Ray uses the default actor "
        f"plan (`{plan}`: one actor per node reserving 1 of 2 CPUs, 2 vecsift worker threads); the "
        "sentence-transformers recipe gets the same reservation and torch on every core.",
        "",
        *markdown_table(["engine", "fixed cost per job, s", f"{args.chunks} chunks, s", "steady chunks/s",
                         "× one process"], rows),
        "",
        f"vecsift on Ray / sentence-transformers on Ray (steady state): "
        f"**{steady['vecsift'] / steady['sentence-transformers']:.2f}×**; vecsift on Ray / vecsift one process: "
        f"**{steady['vecsift'] / ceiling:.2f}×**.",
        "",
        "Runs (s): " + "; ".join(f"{name} {', '.join(f'{s:.1f}' for s in samples)}" for name, samples in runs.items()),
    ])
    print(body)
    if args.write:
        write_section("## Ray Data", "python -m benchmarks.ray_scale --write", body)


if __name__ == "__main__":
    main()
