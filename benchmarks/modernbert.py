"""ModernBERT throughput: vecsift vs transformers' ModernBertModel, same random weights, same run.

A ModernBERT-base-sized checkpoint (hidden 768, 22 layers, intermediate 1152,
12 heads, window 128, global every 3) with random weights is written to a
temporary directory; both engines embed the same mixed-length chunks of real
source code (fp32, CPU, batches of 32 in corpus order, mean pooling).
transformers pads each batch to its longest input; vecsift packs real tokens
only, so the padding share printed below is work it does not do.

    python -m benchmarks.modernbert [--chunks 500] [--repeats 2] [--write]
"""

from __future__ import annotations

import shutil
import statistics
import tempfile
from pathlib import Path

from benchmarks.shared import (
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

SECTION = "## ModernBERT-base-sized, random weights, CPU"


def main() -> None:
    parser = benchmark_arguments(__doc__.splitlines()[0], chunks=500, repeats=2, batch_size=32)
    args = parser.parse_args()

    import torch

    texts = mixed_chunks(args.chunks)
    directory = Path(tempfile.mkdtemp(prefix="vecsift-modernbert-"))
    try:
        make_modernbert_checkpoint(directory)
        encodings = Embedder(str(directory), driver="numpy").tokenizer.encode(texts, max_tokens=args.max_tokens)
        real_tokens = sum(len(e) for e in encodings)
        batches = [encodings[i : i + args.batch_size] for i in range(0, len(encodings), args.batch_size)]
        padded_tokens = sum(len(b) * max(len(e) for e in b) for b in batches)
        run_transformers = transformers_modernbert(directory, batches)

        by_driver = {driver: Embedder(str(directory), driver=driver, batch_size=args.batch_size,
                                      max_tokens=args.max_tokens) for driver in ("numpy", "torch")}
        engines = {"transformers ModernBertModel fp32 (sdpa)": run_transformers,
                   "vecsift numpy fp32": lambda: embed_distributed(encodings, by_driver["numpy"].backends,
                                                                   args.batch_size),
                   "vecsift torch fp32": lambda: embed_distributed(encodings, by_driver["torch"].backends,
                                                                   args.batch_size)}
        for driver in by_driver.values():
            driver.embed(texts[:16])  # warm-up
        runs, outputs = alternate(engines, args.repeats, warm_up=False)
        reference = outputs.pop("transformers ModernBertModel fp32 (sdpa)")
        min_cos = min(float((v * reference).sum(axis=1).min()) for v in outputs.values())
    finally:
        shutil.rmtree(directory, ignore_errors=True)

    anchor = statistics.median(next(iter(runs.values())))
    lines = [
        f"Machine: {describe_machine()}; torch threads {torch.get_num_threads()}.",
        f"Corpus: {len(texts)} mixed-length chunks of stdlib source, {real_tokens} tokens (max {args.max_tokens}); "
        f"batches of {args.batch_size} in corpus order: transformers computes {padded_tokens} padded tokens "
        f"({padded_tokens / real_tokens - 1:+.0%} over the real ones), vecsift only the real ones; both start "
        f"from the same token ids (tokenizing excluded). "
        f"{args.repeats} timed runs each, alternating, after a warm-up. Min cosine vecsift vs transformers: "
        f"{min_cos:.6f}.",
        "",
        *markdown_table(["engine", "median s", "tokens/s", "× transformers"],
                        [(name, f"{m:.1f}", f"{real_tokens / m:.0f}", f"{anchor / m:.2f}")
                         for name, m in ((name, statistics.median(times)) for name, times in runs.items())]),
    ]
    report = "\n".join(lines)
    print(report)
    if args.write:
        write_section(SECTION, "python -m benchmarks.modernbert --write", report)


if __name__ == "__main__":
    main()
