"""GPU throughput: vecsift's CUDA backend vs sentence-transformers and transformers on the same GPU, same run.

Two comparisons at one precision (default fp16), alternating runs, medians:
all-MiniLM-L6-v2 on chunks of real source against sentence-transformers, and a
ModernBERT-base-sized random checkpoint on mixed-length chunks against
transformers' ``ModernBertModel`` (SDPA). vecsift runs through its ring
pipeline (``Embedder(kind="cuda")``); the anchors through their own ``encode``
or forward loop with the same batch size and max length. MiniLM timings include
tokenizing (``encode`` does it); ModernBERT's start from the same token ids. Also: where MiniLM's time
goes (tokenizing alone, the ring alone, and the share of each run the GPU is busy, from torch's profile),
and ModernBERT with its RoPE in torch's elementwise passes instead of the fused kernel (the ablation).

    python -m benchmarks.gpu [--precision fp16|bf16|fp32] [--chunks 2000] [--write]

``--device cpu --precision bf16`` runs the same comparison on the CPU, which
checks the script on a machine without a GPU.
"""

from __future__ import annotations

import shutil
import statistics
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np

from benchmarks.shared import (
    TORCH_DTYPES,
    alternate,
    benchmark_arguments,
    describe_machine,
    make_modernbert_checkpoint,
    markdown_table,
    mixed_chunks,
    transformers_modernbert,
    write_section,
)
from vecsift import Embedder, embed_distributed
from vecsift.backend.driver.torch.rope import TorchRope
from vecsift.models import bundled_model_dir
from vecsift.stdlib_corpus import stdlib_chunks


def table(runs: dict[str, list[float]], outputs: dict[str, object], tokens: int) -> list[str]:
    """Rows for each engine against the first (the anchor): time, throughput, ratio, agreement."""
    def unit(rows: object) -> np.ndarray:  # sentence-transformers normalizes in the model's dtype
        rows = np.asarray(rows, dtype=np.float64)
        return rows / np.linalg.norm(rows, axis=1, keepdims=True)

    anchor_name = next(iter(runs))
    anchor, reference = statistics.median(runs[anchor_name]), unit(outputs[anchor_name])
    rows = []
    for name, times in runs.items():
        median = statistics.median(times)
        agreement = float((unit(outputs[name]) * reference).sum(axis=1).min())
        rows.append((name, f"{median:.2f}", f"{tokens / median:.0f}", f"{anchor / median:.2f}", f"{agreement:.5f}"))
    return markdown_table(["engine", "median s", "tokens/s", "× anchor", "min cos vs anchor"], rows)


def device_seconds(run: Callable[[], object]) -> float:
    """Seconds the GPU was busy during one run: the union of its kernels' and copies' intervals in torch's
    profile (overlapping ones count once)."""
    import torch
    from torch.autograd import DeviceType
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as profiler:
        run()
        torch.cuda.synchronize()
    spans = sorted((e.time_range.start, e.time_range.end) for e in profiler.events()
                   if e.device_type == DeviceType.CUDA)
    busy, reached = 0, float("-inf")
    for start, end in spans:
        if end > reached:
            busy += end - max(start, reached)
            reached = end
    return busy / 1e6


def where_time_goes(runs: dict[str, list[float]], busy: dict[str, float]) -> list[str]:
    """Each stage's median and, for the end-to-end runs, the share of it the GPU was busy."""
    rows = [(name, f"{statistics.median(times) * 1000:.0f}",
             f"{busy[name] * 1000:.0f}" if name in busy else "",
             f"{busy[name] / statistics.median(times):.0%}" if name in busy else "")
            for name, times in runs.items()]
    return markdown_table(["stage", "median ms", "GPU busy ms", "GPU busy"], rows)


def print_profile(run: Callable[[], object], kind: str) -> None:
    """Where one run's time goes: the operators by their own time on the device (CPU without a GPU)."""
    from torch.profiler import ProfilerActivity, profile

    activities = [ProfilerActivity.CPU, *([ProfilerActivity.CUDA] if kind == "cuda" else [])]
    with profile(activities=activities) as profiler:
        run()
    key = "self_cuda_time_total" if kind == "cuda" else "self_cpu_time_total"
    print(profiler.key_averages().table(sort_by=key, row_limit=15), flush=True)


def main() -> None:
    parser = benchmark_arguments(__doc__.splitlines()[0], chunks=2000, repeats=3, batch_size=128)
    parser.add_argument("--device", default="cuda", help="torch device of the anchors (vecsift: its kind)")
    parser.add_argument("--precision", default="fp16", choices=sorted(TORCH_DTYPES))
    parser.add_argument("--modernbert-chunks", type=int, default=1000)
    parser.add_argument("--profile", action="store_true", help="print torch's profile of a vecsift run of each model")
    args = parser.parse_args()

    import torch
    from sentence_transformers import SentenceTransformer

    kind = "cuda" if args.device.startswith("cuda") else "cpu"
    p, size, limit = args.precision, args.batch_size, args.max_tokens
    device_name = torch.cuda.get_device_name(args.device) if kind == "cuda" else "CPU"

    texts = stdlib_chunks(args.chunks)
    ours = Embedder(kind=kind, precision=p, batch_size=size, max_tokens=limit)
    encoded = ours.tokenizer.encode(texts, max_tokens=limit)
    minilm_tokens = sum(len(e) for e in encoded)
    anchor = SentenceTransformer(str(bundled_model_dir()), device=args.device,
                                 model_kwargs={"dtype": getattr(torch, TORCH_DTYPES[p])})
    anchor.max_seq_length = limit
    minilm: dict[str, Callable[[], object]] = {
        f"sentence-transformers {p}": lambda: anchor.encode(texts, batch_size=size, normalize_embeddings=True),
        f"vecsift {kind} {p}": lambda: ours.embed(texts),
        f"vecsift {kind} {p}, streaming": lambda: np.stack(list(ours.embed_stream(texts))),
    }
    minilm_runs, minilm_outputs = alternate(minilm, args.repeats)
    stages: dict[str, Callable[[], object]] = {
        "tokenize (texts → Encodings, all cores)": lambda: ours.tokenizer.encode(texts, max_tokens=limit),
        "ring from Encodings (pack, copy, forward)": lambda: embed_distributed(encoded, ours.backends, size),
        "end to end, embed": lambda: ours.embed(texts),
        "end to end, embed_stream": lambda: np.stack(list(ours.embed_stream(texts))),
    }
    stage_runs, _ = alternate(stages, args.repeats)
    busy = {name: device_seconds(stages[name]) for name in list(stages)[1:]} if kind == "cuda" else {}
    if args.profile:
        print_profile(lambda: ours.embed(texts), kind)

    directory = Path(tempfile.mkdtemp(prefix="vecsift-modernbert-"))
    try:
        make_modernbert_checkpoint(directory)
        mixed = mixed_chunks(args.modernbert_chunks)
        modern = Embedder(str(directory), kind=kind, precision=p, batch_size=size, max_tokens=limit)
        encodings = modern.tokenizer.encode(mixed, max_tokens=limit)
        batches = [encodings[i : i + size] for i in range(0, len(encodings), size)]
        unfused = Embedder(str(directory), kind=kind, precision=p, batch_size=size, max_tokens=limit)
        unfused.backends[0].driver.rope_route = TorchRope()
        rope_route = modern.backends[0].driver.describe().get("rope", "n/a")
        modernbert: dict[str, Callable[[], object]] = {
            f"transformers ModernBertModel {p} (sdpa)": transformers_modernbert(directory, batches, args.device, p),
            f"vecsift {kind} {p}": lambda: embed_distributed(encodings, modern.backends, size),
            f"vecsift {kind} {p}, RoPE in torch passes": lambda: embed_distributed(encodings, unfused.backends, size),
        }
        modern_runs, modern_outputs = alternate(modernbert, args.repeats)
        if kind == "cuda":
            modern_busy = device_seconds(modernbert[f"vecsift {kind} {p}"])
        if args.profile:
            print_profile(modernbert[f"vecsift {kind} {p}"], kind)
    finally:
        shutil.rmtree(directory, ignore_errors=True)

    lines = [
        f"Device: {device_name}; host: {describe_machine()}. Batch {size}, max length {limit}, {p}; "
        f"{args.repeats} timed runs each, alternating, after one warm-up. "
        f"vecsift's attention: {ours.backends[0].driver.describe().get('attention', 'n/a')}; "
        f"ModernBERT's RoPE: {rope_route}.",
        "",
        f"all-MiniLM-L6-v2, {len(texts)} chunks of stdlib source, {minilm_tokens} tokens:",
        "",
        *table(minilm_runs, minilm_outputs, minilm_tokens),
        "",
        "Where MiniLM's time goes (medians of the same number of runs; GPU busy: the union of kernel and copy "
        "intervals in torch's profile of one more run):",
        "",
        *where_time_goes(stage_runs, busy),
        "",
        f"ModernBERT-base-sized (random weights), {len(mixed)} mixed-length chunks, "
        f"{sum(len(e) for e in encodings)} tokens, both engines from the same token ids (tokenizing excluded):",
        "",
        *table(modern_runs, modern_outputs, sum(len(e) for e in encodings)),
        *(["", f"GPU busy during a vecsift ModernBERT run: {modern_busy * 1000:.0f} ms of "
           f"{statistics.median(modern_runs[f'vecsift {kind} {p}']) * 1000:.0f} ms."] if kind == "cuda" else []),
    ]
    report = "\n".join(lines)
    print(report)
    if args.write:
        write_section(f"## GPU ({device_name}), {p}", f"python -m benchmarks.gpu --precision {p} --write",
                      report)


if __name__ == "__main__":
    main()
