"""Throughput of vecsift vs sentence-transformers (the anchor), same texts, same run.

Both embed the same chunks of real Python source with the bundled
all-MiniLM-L6-v2, truncated at the same length, in batches of the same size.
Runs alternate between the two; medians over the repeats are reported with
their ratio and the fraction of the fp32 GEMM roofline measured in this run.

    python benchmarks/throughput.py [--chunks 2000] [--repeats 3] [--write]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import threading
import time
from pathlib import Path

import numpy as np
from threadpoolctl import threadpool_limits

sys.path.insert(0, str(Path(__file__).parent))
from corpus import stdlib_chunks
from machine import describe_machine
from vecsift import Embedder, embed_distributed, load_backend
from vecsift.scheduling import default_workers

RESULTS = Path(__file__).with_name("RESULTS.md")


def gemm_peak_gflops(workers: int) -> float:
    """fp32 GEMM throughput with one single-threaded GEMM per core (the shape of MiniLM's FFN)."""
    x = np.random.default_rng(0).standard_normal((1024, 384), dtype=np.float32)
    w = np.random.default_rng(1).standard_normal((1536, 384), dtype=np.float32)
    reps = 60

    def work() -> None:
        for _ in range(reps):
            x @ w.T

    with threadpool_limits(1, user_api="blas"):
        work()
        threads = [threading.Thread(target=work) for _ in range(workers)]
        start = time.perf_counter()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        elapsed = time.perf_counter() - start
    return 2 * 1024 * 384 * 1536 * reps * workers / elapsed / 1e9


def flops_per_token(hidden: int, intermediate: int, layers: int, mean_length: float) -> float:
    """Forward FLOPs per token: the linear layers plus QKᵀ and PV at the mean input length."""
    return layers * (2 * (4 * hidden * hidden + 2 * hidden * intermediate) + 4 * mean_length * hidden)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--chunks", type=int, default=2000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--max-tokens", type=int, default=256)
    parser.add_argument("--write", action="store_true", help=f"write {RESULTS.name}")
    args = parser.parse_args()

    import torch
    from sentence_transformers import SentenceTransformer

    texts = stdlib_chunks(args.chunks)
    embedder = Embedder(max_tokens=args.max_tokens, batch_size=args.batch_size)
    lengths = [e.num_tokens for e in embedder.tokenizer.encode(texts, max_tokens=args.max_tokens)]
    tokens = sum(lengths)
    anchor = SentenceTransformer(str(embedder.backends[0].arch.files.directory), device="cpu")
    anchor.max_seq_length = args.max_tokens

    def run_anchor(batch: list[str]) -> np.ndarray:
        return anchor.encode(batch, batch_size=args.batch_size, normalize_embeddings=True)

    def run_vecsift(batch: list[str]) -> np.ndarray:
        return embedder.embed(batch)

    def run_stream(batch: list[str]) -> np.ndarray:
        return np.stack(list(embedder.embed_stream(iter(batch))))

    def run_two_backends(batch: list[str]) -> np.ndarray:
        # Simulates a hybrid machine: two backends (one worker each) sharing one queue.
        encodings = embedder.tokenizer.encode(batch, max_tokens=args.max_tokens)
        return embed_distributed(encodings, two_backends, batch_size=args.batch_size, workers=1)

    two_backends = [load_backend("cpu"), load_backend("cpu")]
    engines = {
        "sentence-transformers fp32": run_anchor,
        "vecsift numpy fp32": run_vecsift,
        "vecsift numpy fp32, streaming": run_stream,
        "vecsift 2 CPU backends × 1 worker": run_two_backends,
    }
    runs: dict[str, list[float]] = {name: [] for name in engines}
    for fn in engines.values():
        fn(texts[:128])  # warm-up: page in weights, start threads
    for _ in range(args.repeats):
        for name, fn in engines.items():
            start = time.perf_counter()
            fn(texts)
            runs[name].append(time.perf_counter() - start)

    peak = gemm_peak_gflops(default_workers())
    arch = embedder.backends[0].arch
    per_token = flops_per_token(arch.dim, arch.layers[0].ffn_in_w.shape[0], arch.num_layers,
                                float(np.mean(lengths)))
    roofline = peak * 1e9 / per_token
    anchor_median = statistics.median(runs["sentence-transformers fp32"])
    vectors, reference = run_vecsift(texts[:200]), run_anchor(texts[:200])
    min_cos = float((vectors * reference).sum(axis=1).min())

    lines = [
        f"Machine: {describe_machine()}; torch threads {torch.get_num_threads()}, "
        f"vecsift workers {default_workers()}.",
        f"Corpus: {len(texts)} chunks of stdlib source (40 lines each), {tokens} tokens after truncation at "
        f"{args.max_tokens} (mean {np.mean(lengths):.0f}); batch {args.batch_size}; {args.repeats} timed runs each, "
        "alternating, after one warm-up.",
        f"fp32 GEMM peak measured in this run: {peak:.0f} GFLOP/s → roofline {roofline:.0f} tokens/s "
        f"({per_token / 1e6:.1f} MFLOP/token). Min cosine vecsift vs anchor on 200 chunks: {min_cos:.7f}.",
        "",
        "| engine | median s | chunks/s | tokens/s | × anchor | of roofline |",
        "|---|---|---|---|---|---|",
    ]
    for name, times in runs.items():
        median = statistics.median(times)
        lines.append(
            f"| {name} | {median:.2f} | {len(texts) / median:.1f} | {tokens / median:.0f} | "
            f"{anchor_median / median:.2f} | {tokens / median / roofline:.0%} |"
        )
    stream_cost = statistics.median(runs["vecsift numpy fp32, streaming"]) / statistics.median(
        runs["vecsift numpy fp32"]) - 1
    lines += ["", f"Streaming costs {stream_cost:+.1%} against the batch path on the same texts."]
    report = "\n".join(lines)
    print(report)
    if args.write:
        RESULTS.write_text(
            "# Benchmark results\n\nWritten by `python benchmarks/throughput.py --write` "
            f"on {time.strftime('%Y-%m-%d')}.\n\n## Throughput, all-MiniLM-L6-v2, CPU\n\n{report}\n"
        )


if __name__ == "__main__":
    main()
