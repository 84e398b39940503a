"""The host stage alone: texts → a packed batch ready to copy to a device, per core, old path against new.

What the GPU ring's producer does for every batch, without any forward pass: tokenize, make the encodings,
pack them into a ring slot's buffers. Measured on one core (tokenizers' own thread pool off), so the
numbers are per core; the old path (the code before this change: ``encode_batch`` with offsets, a NumPy
conversion and a validated ``Encoding`` per text, packing in a loop over inputs) is kept here, verbatim in
effect, and timed in the same run, alternating, medians of ``--repeats``.

    python -m benchmarks.host_path [--chunks 8000] [--lines 5] [--write]
"""

from __future__ import annotations

import os

os.environ["TOKENIZERS_PARALLELISM"] = "false"  # one core: before tokenizers is imported

import statistics

import numpy as np

from benchmarks.shared import alternate, benchmark_arguments, describe_machine, markdown_table, write_section
from vecsift import Encoding, load_tokenizer
from vecsift.backend.token_batch import PackBuffers, TokenBatch
from vecsift.stdlib_corpus import stdlib_chunks

BATCH = 128  # what a GPU ring slot holds: GPU_CLAIM_UNITS × batch_size 32


def legacy_encode(tokenizer, texts: list[str], limit: int) -> list[Encoding]:
    """The old path: encode_batch (offsets and all), three lists → three arrays → a validated Encoding each."""
    fast = tokenizer._configured(limit, "right")
    return [Encoding(np.asarray(e.ids, dtype=np.int64), np.asarray(e.attention_mask, dtype=np.int64),
                     np.asarray(e.type_ids, dtype=np.int64)) for e in fast.encode_batch(texts)]


def legacy_pack(encodings: list[Encoding], buffers: PackBuffers) -> TokenBatch:
    """The old packing: a dense check, three slice assignments and an arange per input."""
    dense = all(e.attention_mask.all() for e in encodings)
    lengths = [len(e) for e in encodings]
    total = sum(lengths)
    buffers.reserve(total, len(encodings))
    ids, positions, types = buffers.tokens[:, :total]
    cu_seqlens = buffers.cu_seqlens[: len(encodings) + 1]
    np.cumsum(lengths, out=cu_seqlens[1:])
    for i, e in enumerate(encodings):
        rows = slice(cu_seqlens[i], cu_seqlens[i + 1])
        ids[rows], types[rows] = e.input_ids, e.token_type_ids
        positions[rows] = np.arange(lengths[i])
    return TokenBatch(ids, positions, types, cu_seqlens, dense)


def main() -> None:
    parser = benchmark_arguments(__doc__.splitlines()[0], chunks=8000, repeats=5, batch_size=BATCH)
    parser.add_argument("--lines", type=int, default=5, help="lines per chunk (default: 5)")
    args = parser.parse_args()
    tokenizer = load_tokenizer()
    texts = stdlib_chunks(args.chunks, args.lines)
    slices = [texts[i : i + args.batch_size] for i in range(0, len(texts), args.batch_size)]
    buffers = PackBuffers()

    def old() -> list[TokenBatch]:
        return [legacy_pack(legacy_encode(tokenizer, part, args.max_tokens), buffers) for part in slices]

    def new() -> list[TokenBatch]:
        return [TokenBatch.from_encodings(tokenizer.encode(part, max_tokens=args.max_tokens), buffers)
                for part in slices]

    check = PackBuffers()
    for part in slices:  # the same packed batches, field by field
        a = legacy_pack(legacy_encode(tokenizer, part, args.max_tokens), buffers)
        b = TokenBatch.from_encodings(tokenizer.encode(part, max_tokens=args.max_tokens), check)
        for field in ("input_ids", "position_ids", "token_type_ids", "cu_seqlens"):
            assert np.array_equal(getattr(a, field), getattr(b, field)), field
    tokens = sum(len(e) for e in tokenizer.encode(texts, max_tokens=args.max_tokens))
    runs, _ = alternate({"old host path": old, "new host path": new}, args.repeats)
    median = {name: statistics.median(samples) for name, samples in runs.items()}
    old_median = median["old host path"]
    rows = [(name, f"{seconds:.3f}", f"{tokens / seconds:,.0f}", f"{old_median / seconds:.2f}×")
            for name, seconds in median.items()]
    body = "\n".join([
        f"Machine: {describe_machine()}; one core (TOKENIZERS_PARALLELISM=false).",
        f"{len(texts)} stdlib chunks of {args.lines} lines, {tokens} tokens after truncation at {args.max_tokens}, in "
        f"batches of {args.batch_size} (a GPU ring slot); medians of {args.repeats} alternating runs. Both paths give "
        "the same packed arrays (checked).", "",
        *markdown_table(["path", "median s", "tokens/s per core", "× old"], rows),
    ])
    print(body)
    if args.write:
        write_section("## Host stage (texts → packed batch), per core", "python -m benchmarks.host_path --write",
                      body)


if __name__ == "__main__":
    main()
