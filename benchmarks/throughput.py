"""Throughput of vecsift vs sentence-transformers (the anchor), same texts, same run.

Both embed the same chunks of real Python source with the bundled
all-MiniLM-L6-v2, truncated at the same length, in batches of the same size.
Runs alternate between the two; medians over the repeats are reported with
their ratio and the fraction of the matching GEMM roofline (fp32, bf16, int8)
measured in this run.

    python -m benchmarks.throughput [--chunks 2000] [--repeats 3] [--write]
"""

from __future__ import annotations

import statistics
import threading
import time
from collections.abc import Callable
from functools import partial

import numpy as np
from threadpoolctl import threadpool_limits

from benchmarks.shared import alternate, benchmark_arguments, describe_machine, markdown_table, write_section
from vecsift import Embedder, embed_distributed, load_backend
from vecsift.hardware import onednn_isa_cap
from vecsift.scheduling import default_workers
from vecsift.stdlib_corpus import stdlib_chunks


def gemm_peak_gflops(workers: int) -> dict[str, float]:
    """GEMM throughput per precision on MiniLM's FFN shape at the torch driver's sub-batch size, run the
    way the CPU paths run (one single-threaded GEMM per worker, all at once), with the kernels each path
    uses: fp32 the best of NumPy and torch; bf16 oneDNN's linear; int8 oneDNN's quantized linear (the
    GEMM alone, without quantizing its input), or where int8 runs dequantized (no AMX int8), the GEMM of
    the dtype it runs in (bf16's or fp32's)."""
    import torch

    from vecsift.backend.driver.torch import TorchDriver
    from vecsift.backend.driver.torch.ops import default_int8_kernel, int8_activations, quantize_per_token

    rows, reps = 2048, 20
    x = torch.randn(rows, 384, generator=torch.Generator().manual_seed(0))
    w = torch.randn(1536, 384, generator=torch.Generator().manual_seed(1))
    x_np, w_np, x_bf16, w_bf16 = x.numpy(), w.numpy(), x.bfloat16(), w.bfloat16()
    kernels = {
        "numpy fp32": lambda: x_np @ w_np.T,
        "fp32": lambda: torch.nn.functional.linear(x, w),
        "bf16": lambda: torch.ops.mkldnn._linear_pointwise(x_bf16, w_bf16, None, "none", [], ""),
    }
    if default_int8_kernel() == "onednn":
        int8_weight = TorchDriver("cpu", "int8").linear_weight(w_np)
        int8_x, _ = quantize_per_token(x_bf16)
        kernels["int8"] = lambda: torch.ops.onednn.qlinear_pointwise(
            int8_x, 1.0, 0, int8_weight.packed, int8_weight.scale, int8_weight.zero_points, None, 1.0, 0,
            torch.bfloat16, "none", [], "")
    elif int8_activations("dequantized") == torch.bfloat16:
        kernels["int8"] = kernels["bf16"]

    def rate(kernel: Callable[[], object]) -> float:
        def work() -> None:
            for _ in range(reps):
                kernel()

        work()
        threads = [threading.Thread(target=work) for _ in range(workers)]
        start = time.perf_counter()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        return 2 * rows * 384 * 1536 * reps * workers / (time.perf_counter() - start) / 1e9

    saved = torch.get_num_threads()
    with threadpool_limits(1, user_api="blas"):
        torch.set_num_threads(1)
        try:
            peaks = {name: rate(kernel) for name, kernel in kernels.items()}
        finally:
            torch.set_num_threads(saved)
    peaks["fp32"] = max(peaks["fp32"], peaks.pop("numpy fp32"))
    peaks.setdefault("int8", peaks["fp32"])  # dequantized int8 running fp32's GEMMs
    return peaks


def flops_per_token(hidden: int, intermediate: int, layers: int, mean_length: float) -> float:
    """Forward FLOPs per token: the linear layers plus QKᵀ and PV at the mean input length."""
    return layers * (2 * (4 * hidden * hidden + 2 * hidden * intermediate) + 4 * mean_length * hidden)


def main() -> None:
    parser = benchmark_arguments(__doc__.splitlines()[0], chunks=2000, repeats=3, batch_size=32)
    parser.add_argument("--engines", default="", help="comma-separated parts of engine names to run (default: all)")
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

    def streaming(driver: str) -> Callable[[list[str]], np.ndarray]:
        e = Embedder(driver=driver, max_tokens=args.max_tokens, batch_size=args.batch_size)
        return lambda batch: np.stack(list(e.embed_stream(iter(batch))))

    two_backends = [load_backend("cpu", driver="numpy"), load_backend("cpu", driver="numpy")]

    def run_two_backends(batch: list[str]) -> np.ndarray:
        # Simulates a hybrid machine: two backends (one worker each) sharing one queue.
        encodings = embedder.tokenizer.encode(batch, max_tokens=args.max_tokens)
        return embed_distributed(encodings, two_backends, batch_size=args.batch_size, workers=1)

    engines: dict[str, tuple[str, Callable[[list[str]], np.ndarray]]] = {
        "sentence-transformers fp32": ("fp32", sentence_transformers("fp32")),
        "sentence-transformers bf16": ("bf16", sentence_transformers("bf16")),
        "vecsift numpy fp32": ("fp32", vecsift("numpy")),
        "vecsift numpy fp32, streaming": ("fp32", streaming("numpy")),
        "vecsift numpy fp32, 2 backends × 1 worker": ("fp32", run_two_backends),
        "vecsift torch fp32": ("fp32", vecsift("torch")),
        "vecsift torch fp32, streaming": ("fp32", streaming("torch")),
        "vecsift torch bf16": ("bf16", vecsift("torch", "bf16")),
        "vecsift torch int8": ("int8", vecsift("torch", "int8")),
    }
    if args.engines:
        wanted = [w.strip() for w in args.engines.split(",")]
        engines = {n: e for n, e in engines.items() if n == "sentence-transformers fp32" or any(w in n for w in wanted)}
    reference = engines["sentence-transformers fp32"][1](texts[:200])
    agreement = {}
    for name, (_, fn) in engines.items():
        agreement[name] = float((fn(texts[:200]) * reference).sum(axis=1).min())  # also the warm-up
    runs, _ = alternate({name: partial(fn, texts) for name, (_, fn) in engines.items()}, args.repeats,
                        warm_up=False)

    peaks = gemm_peak_gflops(default_workers())
    arch = embedder.backends[0].arch
    per_token = flops_per_token(arch.config.hidden, arch.config.intermediate, arch.config.layers,
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
    ]
    rows = []
    for name, times in runs.items():
        median = statistics.median(times)
        rows.append((name, f"{median:.2f}", f"{len(texts) / median:.1f}", f"{tokens / median:.0f}",
                     f"{anchor_median / median:.2f}", f"{tokens / median / roofline[engines[name][0]]:.0%}",
                     f"{agreement[name]:.5f}"))
    lines += markdown_table(["engine", "median s", "chunks/s", "tokens/s", "× ST fp32", "of its roofline",
                             "min cos vs ST fp32 (200)"], rows)
    streaming_costs = []
    for driver in ("numpy", "torch"):
        batch, stream = f"vecsift {driver} fp32", f"vecsift {driver} fp32, streaming"
        if batch in runs and stream in runs:
            cost = statistics.median(runs[stream]) / statistics.median(runs[batch]) - 1
            streaming_costs.append(f"Streaming ({driver}) costs {cost:+.1%} against the batch path on the same texts.")
    if streaming_costs:
        lines += ["", *streaming_costs]
    report = "\n".join(lines)
    print(report)
    if args.write:
        cap = onednn_isa_cap()
        capped = f" (oneDNN capped at {cap.upper()}: as without AMX)" if cap else ""
        command = f"ONEDNN_MAX_CPU_ISA={cap.upper()} " if cap else ""
        write_section(f"## Throughput, all-MiniLM-L6-v2, CPU{capped}",
                      f"{command}python -m benchmarks.throughput --write", report)


if __name__ == "__main__":
    main()
