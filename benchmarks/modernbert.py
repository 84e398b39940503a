"""ModernBERT throughput: vecsift vs transformers' ModernBertModel, same random weights, same run.

A ModernBERT-base-sized checkpoint (hidden 768, 22 layers, intermediate 1152,
12 heads, window 128, global every 3) with random weights is written to a
temporary directory; both engines embed the same mixed-length chunks of real
source code (fp32, CPU, batches of 32 in corpus order, mean pooling).
transformers pads each batch to its longest input; vecsift packs real tokens
only, so the padding share printed below is work it does not do.

    python benchmarks/modernbert.py [--chunks 500] [--repeats 2] [--write]
"""

from __future__ import annotations

import random
import shutil
import statistics
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from corpus import stdlib_chunks
from machine import describe_machine, write_section
from timing import alternate, benchmark_arguments
from vecsift import Embedder, Encoding, embed_distributed
from vecsift.models import bundled_model_dir

RESULTS = Path(__file__).with_name("RESULTS.md")
TORCH_DTYPES = {"fp32": "float32", "fp16": "float16", "bf16": "bfloat16"}
SECTION = "## ModernBERT-base-sized, random weights, CPU"


def make_checkpoint(directory: Path) -> None:
    import torch
    from transformers import ModernBertConfig, ModernBertModel

    torch.manual_seed(0)
    config = ModernBertConfig(vocab_size=30522, hidden_size=768, num_hidden_layers=22, intermediate_size=1152,
                              num_attention_heads=12, local_attention=128, global_attn_every_n_layers=3,
                              max_position_embeddings=8192, pad_token_id=0, bos_token_id=101, eos_token_id=102,
                              cls_token_id=101, sep_token_id=102)
    ModernBertModel(config).eval().save_pretrained(directory, safe_serialization=True)
    shutil.copy(bundled_model_dir() / "tokenizer.json", directory / "tokenizer.json")


def mixed_chunks(count: int) -> list[str]:
    """``count`` chunks of 10 to 40 lines of real source: mixed lengths, so padding matters."""
    rng = random.Random(0)
    pool = stdlib_chunks(count * 4, lines_per_chunk=10)
    return ["".join(pool[i : i + rng.randint(1, 4)]) for i in range(0, len(pool), 4)][:count]


def transformers_embedder(directory: Path, batches: list[list[Encoding]], device: str = "cpu",
                          dtype: str = "fp32") -> Callable[[], np.ndarray]:
    """transformers' ``ModernBertModel`` (SDPA attention) on padded batches, mean-pooled and normalized."""
    import torch
    from transformers import ModernBertModel

    model = ModernBertModel.from_pretrained(directory, dtype=getattr(torch, TORCH_DTYPES[dtype])).to(device).eval()

    def run() -> np.ndarray:
        out = []
        with torch.inference_mode():
            for batch in batches:
                width = max(len(e) for e in batch)
                ids = torch.from_numpy(np.stack([np.pad(e.input_ids, (0, width - len(e))) for e in batch]))
                mask = torch.from_numpy(np.stack([np.pad(e.attention_mask, (0, width - len(e))) for e in batch]))
                ids, mask = ids.to(device), mask.to(device)
                hidden = model(input_ids=ids, attention_mask=mask).last_hidden_state.float()
                m = mask[..., None].float()
                out.append(torch.nn.functional.normalize((hidden * m).sum(1) / m.sum(1), dim=-1).cpu().numpy())
        return np.concatenate(out)

    return run


def main() -> None:
    parser = benchmark_arguments(__doc__.splitlines()[0], RESULTS, chunks=500, repeats=2, batch_size=32)
    args = parser.parse_args()

    import torch

    texts = mixed_chunks(args.chunks)
    directory = Path(tempfile.mkdtemp(prefix="vecsift-modernbert-"))
    try:
        make_checkpoint(directory)
        encodings = Embedder(str(directory), driver="numpy").tokenizer.encode(texts, max_tokens=args.max_tokens)
        real_tokens = sum(len(e) for e in encodings)
        batches = [encodings[i : i + args.batch_size] for i in range(0, len(encodings), args.batch_size)]
        padded_tokens = sum(len(b) * max(len(e) for e in b) for b in batches)
        run_transformers = transformers_embedder(directory, batches)

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
        "| engine | median s | tokens/s | × transformers |",
        "|---|---|---|---|",
    ]
    for name, times in runs.items():
        median = statistics.median(times)
        lines.append(f"| {name} | {median:.1f} | {real_tokens / median:.0f} | {anchor / median:.2f} |")
    report = "\n".join(lines)
    print(report)
    if args.write:
        write_section(RESULTS, SECTION, "python benchmarks/modernbert.py --write", report)


if __name__ == "__main__":
    main()
