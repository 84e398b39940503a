"""What every benchmark shares: the options, alternating timed runs, the machine line, the results file and
its tables, and the ModernBERT-base-sized checkpoint and its transformers anchor.

Benchmarks import from here only (and from vecsift; ``serve_ab`` also uses ``serve_load``'s load generator);
each runs as ``python -m benchmarks.NAME``.
"""

from __future__ import annotations

import argparse
import os
import platform
import random
import re
import shutil
import time
from collections.abc import Callable, Iterable, Sequence
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import numpy as np
from threadpoolctl import threadpool_info

from vecsift import Encoding
from vecsift.hardware import cpu_model
from vecsift.models import bundled_model_dir
from vecsift.stdlib_corpus import stdlib_chunks

RESULTS = Path(__file__).with_name("RESULTS.md")
TORCH_DTYPES = {"fp32": "float32", "fp16": "float16", "bf16": "bfloat16"}


# -- options and timing ----------------------------------------------------------------
def benchmark_arguments(description: str, *, chunks: int, repeats: int, batch_size: int) -> argparse.ArgumentParser:
    """The options every benchmark script takes; each adds its own to the parser it gets back."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--chunks", type=int, default=chunks)
    parser.add_argument("--repeats", type=int, default=repeats)
    parser.add_argument("--batch-size", type=int, default=batch_size)
    parser.add_argument("--max-tokens", type=int, default=256)
    parser.add_argument("--write", action="store_true", help=f"write this script's section of {RESULTS.name}")
    return parser


def alternate(engines: dict[str, Callable[[], object]], repeats: int, warm_up: bool = True
              ) -> tuple[dict[str, list[float]], dict[str, object]]:
    """Seconds per run of each engine, ``repeats`` times, alternating so that drifts of a shared machine hit
    every engine alike, after one untimed warm-up each; also the last output of each engine."""
    outputs = {name: fn() for name, fn in engines.items()} if warm_up else {}
    runs: dict[str, list[float]] = {name: [] for name in engines}
    for _ in range(repeats):
        for name, fn in engines.items():
            start = time.perf_counter()
            outputs[name] = fn()
            runs[name].append(time.perf_counter() - start)
    return runs, outputs


# -- reporting -------------------------------------------------------------------------
def describe_machine() -> str:
    """One line: CPU, cores, Python, NumPy and its BLAS, torch."""
    blas = ", ".join(
        f"{i.get('internal_api')} {i.get('version')} ({i.get('architecture')})"
        for i in threadpool_info() if i.get("user_api") == "blas"
    )
    try:
        torch_version = version("torch")
    except PackageNotFoundError:
        torch_version = "not installed"
    return (f"{cpu_model()}, {os.cpu_count()} cores, Python {platform.python_version()}, "
            f"NumPy {np.__version__} ({blas}), torch {torch_version}")


def markdown_table(header: Sequence[str], rows: Iterable[Sequence[object]]) -> list[str]:
    """The lines of a Markdown table; cells are written as given (format numbers before)."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in rows:
        if len(row) != len(header):
            raise ValueError(f"a row of {len(row)} cells in a table of {len(header)} columns: {row}")
        lines.append("| " + " | ".join(str(cell) for cell in row) + " |")
    return lines


def write_section(heading: str, command: str, body: str, path: Path = RESULTS) -> None:
    """Replace (or add) one ``## heading`` section of the results file, keeping the others."""
    text = path.read_text() if path.exists() else "# Benchmark results\n"
    section = f"{heading}\n\nWritten by `{command}` on {time.strftime('%Y-%m-%d')}.\n\n{body}\n"
    pattern = re.compile(rf"^{re.escape(heading)}\n.*?(?=^## |\Z)", re.S | re.M)
    text = pattern.sub(lambda _: section + "\n", text) if pattern.search(text) else f"{text.rstrip()}\n\n{section}"
    path.write_text(text.rstrip() + "\n")


# -- ModernBERT-base-sized, random weights ------------------------------------------------
def make_modernbert_checkpoint(directory: Path) -> None:
    """hidden 768, 22 layers, intermediate 1152, 12 heads, window 128, global every 3; random weights."""
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


def transformers_modernbert(directory: Path, batches: list[list[Encoding]], device: str = "cpu",
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
