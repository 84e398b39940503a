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
from collections.abc import Callable
from pathlib import Path

import numpy as np
from threadpoolctl import threadpool_limits

sys.path.insert(0, str(Path(__file__).parent))
from corpus import stdlib_chunks
from machine import describe_machine, write_section
from vecsift import Embedder, embed_distributed, load_backend
from vecsift.scheduling import default_workers

RESULTS = Path(__file__).with_name("RESULTS.md")


def gemm_peak_gflops(workers: int) -> dict[str, float]:
    """GEMM throughput per precision on MiniLM's FFN shape: NumPy fp32 with one single-threaded GEMM per
    core; torch bf16 and int8 (``torch._int_mm``) with torch's own threads."""
    import torch

    x = np.random.default_rng(0).standard_normal((1024, 384), dtype=np.float32)
    w = np.random.default_rng(1).standard_normal((1536, 384), dtype=np.float32)
    flops = 2 * 1024 * 384 * 1536
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
        peaks = {"fp32": flops * reps * workers / (time.perf_counter() - start) / 1e9}
    xt, wt = torch.from_numpy(x), torch.from_numpy(w).T.contiguous()
    operands = {"bf16": (torch.matmul, xt.bfloat16(), wt.bfloat16()),
                "int8": (torch._int_mm, xt.to(torch.int8), wt.to(torch.int8))}
    for name, (mm, a, b) in operands.items():
        mm(a, b)
        start = time.perf_counter()
        for _ in range(reps):
            mm(a, b)
        peaks[name] = flops * reps / (time.perf_counter() - start) / 1e9
    return peaks


def flops_per_token(hidden: int, intermediate: int, layers: int, mean_length: float) -> float:
    """Forward FLOPs per token: the linear layers plus QKᵀ and PV at the mean input length."""
    return layers * (2 * (4 * hidden * hidden + 2 * hidden * intermediate) + 4 * mean_length * hidden)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--chunks", type=int, default=2000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--max-tokens", type=int, default=256)
    parser.add_argument("--engines", default="", help="comma-separated parts of engine names to run (default: all)")
    parser.add_argument("--write", action="store_true", help=f"write {RESULTS.name}")
    args = parser.parse_args()

    import torch
    from sentence_transformers import SentenceTransformer

    texts = stdlib_chunks(args.chunks)
    embedder = Embedder(max_tokens=args.max_tokens, batch_size=args.batch_size)
    lengths = [e.num_tokens for e in embedder.tokenizer.encode(texts, max_tokens=args.max_tokens)]
    tokens = sum(lengths)
    model_dir = str(embedder.backends[0].arch.files.directory)
    anchors = {"fp32": SentenceTransformer(model_dir, device="cpu"),
               "bf16": SentenceTransformer(model_dir, device="cpu", model_kwargs={"dtype": torch.bfloat16})}
    for anchor in anchors.values():
        anchor.max_seq_length = args.max_tokens

    def sentence_transformers(precision: str) -> Callable[[list[str]], np.ndarray]:
        return lambda batch: anchors[precision].encode(batch, batch_size=args.batch_size, normalize_embeddings=True)

    def vecsift(driver: str, precision: str = "fp32") -> Callable[[list[str]], np.ndarray]:
        e = Embedder(driver=driver, precision=precision, max_tokens=args.max_tokens, batch_size=args.batch_size)
        return e.embed

    def run_stream(batch: list[str]) -> np.ndarray:
        return np.stack(list(embedder.embed_stream(iter(batch))))

    two_backends = [load_backend("cpu", driver="numpy"), load_backend("cpu", driver="numpy")]

    def run_two_backends(batch: list[str]) -> np.ndarray:
        # Simulates a hybrid machine: two backends (one worker each) sharing one queue.
        encodings = embedder.tokenizer.encode(batch, max_tokens=args.max_tokens)
        return embed_distributed(encodings, two_backends, batch_size=args.batch_size, workers=1)

    engines: dict[str, tuple[str, Callable[[list[str]], np.ndarray]]] = {
        "sentence-transformers fp32": ("fp32", sentence_transformers("fp32")),
        "sentence-transformers bf16": ("bf16", sentence_transformers("bf16")),
        "vecsift numpy fp32": ("fp32", vecsift("numpy")),
        "vecsift numpy fp32, streaming": ("fp32", run_stream),
        "vecsift numpy fp32, 2 backends × 1 worker": ("fp32", run_two_backends),
        "vecsift torch fp32": ("fp32", vecsift("torch")),
        "vecsift torch bf16": ("bf16", vecsift("torch", "bf16")),
        "vecsift torch int8": ("int8", vecsift("torch", "int8")),
    }
    if args.engines:
        wanted = [w.strip() for w in args.engines.split(",")]
        engines = {n: e for n, e in engines.items() if n == "sentence-transformers fp32" or any(w in n for w in wanted)}
    runs: dict[str, list[float]] = {name: [] for name in engines}
    reference = engines["sentence-transformers fp32"][1](texts[:200])
    agreement = {}
    for name, (_, fn) in engines.items():
        agreement[name] = float((fn(texts[:200]) * reference).sum(axis=1).min())  # also the warm-up
    for _ in range(args.repeats):
        for name, (_, fn) in engines.items():
            start = time.perf_counter()
            fn(texts)
            runs[name].append(time.perf_counter() - start)

    peaks = gemm_peak_gflops(default_workers())
    arch = embedder.backends[0].arch
    per_token = flops_per_token(arch.dim, int(arch.files.config["intermediate_size"]), arch.num_layers,
                                float(np.mean(lengths)))
    roofline = {precision: peak * 1e9 / per_token for precision, peak in peaks.items()}
    anchor_median = statistics.median(runs["sentence-transformers fp32"])

    lines = [
        f"Machine: {describe_machine()}; torch threads {torch.get_num_threads()}, "
        f"vecsift workers {default_workers()}.",
        f"Corpus: {len(texts)} chunks of stdlib source (40 lines each), {tokens} tokens after truncation at "
        f"{args.max_tokens} (mean {np.mean(lengths):.0f}); batch {args.batch_size}; {args.repeats} timed runs each, "
        "alternating, after one warm-up.",
        "GEMM peaks measured in this run (GFLOP/s or GOP/s): "
        + ", ".join(f"{p} {v:.0f} → roofline {roofline[p]:.0f} tokens/s" for p, v in peaks.items())
        + f" ({per_token / 1e6:.1f} MFLOP/token).",
        "",
        "| engine | median s | chunks/s | tokens/s | × ST fp32 | of its roofline | min cos vs ST fp32 (200) |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, times in runs.items():
        median = statistics.median(times)
        precision = engines[name][0]
        lines.append(
            f"| {name} | {median:.2f} | {len(texts) / median:.1f} | {tokens / median:.0f} | "
            f"{anchor_median / median:.2f} | {tokens / median / roofline[precision]:.0%} | {agreement[name]:.5f} |"
        )
    if "vecsift numpy fp32, streaming" in runs and "vecsift numpy fp32" in runs:
        stream_cost = statistics.median(runs["vecsift numpy fp32, streaming"]) / statistics.median(
            runs["vecsift numpy fp32"]) - 1
        lines += ["", f"Streaming costs {stream_cost:+.1%} against the batch path on the same texts."]
    report = "\n".join(lines)
    print(report)
    if args.write:
        write_section(RESULTS, "## Throughput, all-MiniLM-L6-v2, CPU", "python benchmarks/throughput.py --write",
                      report)


if __name__ == "__main__":
    main()
