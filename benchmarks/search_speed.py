"""Search speed: index build against `Embedder.embed` on the same chunks, refreshes, query latency, cold CLI.

Rows (medians of several runs, one machine, one run of this script):

- build: the full stdlib tree (≥ 2,000 files) indexed from scratch by ``vecsift index``, against
  ``vecsift embed --jsonl`` on exactly the texts the index embedded, each a fresh process, end to end;
  and walk + read + chunk alone, as a share of the embedding time;
- refresh with nothing changed; one file edited, then refresh and search;
- warm query latency through ``Index.search`` on the stdlib index and on synthetic indexes of 10k and
  200k chunks (random unit vectors, real code text for the keyword index);
- ``vecsift search`` in a fresh process on an up-to-date index of this repository, and where its
  time goes; size on disk per chunk and the search process's peak memory.

    python -m benchmarks.search_speed [--write] [--repeats 5] [--skip-build]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import sysconfig
import tempfile
import time
from pathlib import Path

import numpy as np

from benchmarks.shared import RESULTS, describe_machine, markdown_table, write_section
from vecsift.search import Index
from vecsift.search.chunk import Chunk, chunk_text, embedding_text
from vecsift.search.code_tokens import index_text
from vecsift.search.store import IndexStore
from vecsift.search.walk import WalkOptions, read_source, walk

REPO = Path(__file__).resolve().parent.parent
STDLIB = Path(sysconfig.get_paths()["stdlib"])
QUERIES = ["parse command line arguments", "retry a failed connection", "read a zip archive", "lru cache",
           "format a date as ISO 8601", "walk a directory tree", "escape html entities", "HTTPConnection request"]


def median_ms(samples: list[float]) -> str:
    return f"{statistics.median(samples) * 1000:.1f} ms"


def percentile(samples: list[float], q: float) -> float:
    return float(np.percentile(np.array(samples), q))


def time_queries(index: Index, repeats: int) -> list[float]:
    for query in QUERIES:  # warm: model loaded, chunk table cached
        index.search(query, refresh=False)
    samples = []
    for _ in range(repeats):
        for query in QUERIES:
            started = time.perf_counter()
            index.search(query, refresh=False)
            samples.append(time.perf_counter() - started)
    return samples


def stdlib_rows(work: Path, repeats: int, lines: list[str]) -> None:
    tree = work / "stdlib"
    shutil.copytree(STDLIB, tree, ignore=shutil.ignore_patterns("site-packages", "__pycache__"))
    files = list(walk(tree.resolve(), WalkOptions()))
    index_dir = work / "indexes"

    # The build and `vecsift embed` on exactly the texts the index embedded, each a fresh process, end to end
    # (imports, model load, reading, embedding, writing).
    started = time.perf_counter()
    subprocess.run([sys.executable, "-m", "vecsift", "index", str(tree), "--index-dir", str(index_dir)], check=True,
                   capture_output=True)
    build = time.perf_counter() - started
    index = Index(tree, index_dir=index_dir, warn=lambda m: None)
    store = IndexStore(index.directory, writable=False)
    with store.read():
        rows = store._db.execute("SELECT f.path, f.language, c.start_line, c.end_line, c.kind, c.name, c.scope, "
                                 "c.text FROM chunks c JOIN files f ON f.id = c.file_id").fetchall()
    store.close()
    unique = list(dict.fromkeys(embedding_text(Chunk(*row)) for row in rows))
    source = work / "texts.jsonl"
    source.write_text("".join(json.dumps({"id": i, "text": t}) + "\n" for i, t in enumerate(unique)))
    started = time.perf_counter()
    subprocess.run([sys.executable, "-m", "vecsift", "embed", "--jsonl", str(source), "--precision", index.precision,
                    "-o", str(work / "vectors.npy"), "--no-progress"], check=True, capture_output=True)
    embedding = time.perf_counter() - started
    lines.append(f"Tree: the standard library of Python {sys.version.split()[0]}, {len(files)} files indexed, "
                 f"{len(unique)} chunks embedded in {index.precision}.")

    started = time.perf_counter()
    for file in walk(tree.resolve(), WalkOptions()):
        _, text, _ = read_source(file)
        if text is not None:
            for chunk in chunk_text(file.path, text, 700):
                embedding_text(chunk)
                index_text(chunk.text)
    chunking = time.perf_counter() - started
    lines += ["", *markdown_table(["step (a fresh process each)", "seconds", "chunks/s", "vs `vecsift embed`"], [
        ("`vecsift index`: walk, chunk, embed, store", f"{build:.1f}", f"{len(unique) / build:.1f}",
         f"{build / embedding:.3f}×"),
        (f"`vecsift embed --jsonl` on the same {len(unique)} texts", f"{embedding:.1f}",
         f"{len(unique) / embedding:.1f}", "1.000×"),
        ("walk + read + chunk + keyword tokens alone (in process)", f"{chunking:.1f}", "—",
         f"{chunking / embedding:.3f}×"),
    ]), ""]

    noop = []
    for _ in range(repeats):
        started = time.perf_counter()
        index.refresh()
        noop.append(time.perf_counter() - started)
    target = tree / "textwrap.py"
    original = target.read_text()
    edit = []
    for round_ in range(repeats):
        target.write_text(original.replace("def dedent(text):", f"def dedent(text):  # edit {round_}"))
        started = time.perf_counter()
        index.search("remove common leading whitespace", top_k=5)  # refreshes first
        edit.append(time.perf_counter() - started)
    target.write_text(original)
    index.refresh()
    latency = time_queries(index, repeats)
    store = IndexStore(index.directory, writable=False)
    with store.read():
        chunks = store.counts()["chunks"]
    size = store.size_on_disk()
    store.close()
    lines += [*markdown_table(["operation", "median", "samples"], [
        (f"refresh, nothing changed ({len(files)} files stat'ed)", median_ms(noop), len(noop)),
        ("edit one file, then `search` (refresh + query)", median_ms(edit), len(edit)),
        (f"warm query, {chunks} chunks: p50 / p95",
         f"{percentile(latency, 50) * 1000:.1f} / {percentile(latency, 95) * 1000:.1f} ms", len(latency)),
    ]), "",
              f"Index size: {size / 1e6:.1f} MB for {chunks} chunks, {size / chunks / 1024:.2f} KiB per chunk "
              f"(SQLite with the chunk texts and the FTS5 index, plus {index._dim() * 4} bytes of float32 vector).",
              ""]
    index.close()


def synthetic_index(work: Path, chunks: int, source_lines: list[str]) -> Index:
    """An index of ``chunks`` chunks with real code lines as text and random unit vectors (no embedding)."""
    root = work / f"synthetic-{chunks}"
    root.mkdir()
    index = Index(root, index_dir=work / "indexes", precision="fp32", warn=lambda m: None)
    index._make_directory()
    store = IndexStore(index.directory, writable=True)
    dim = index._dim()
    rng = np.random.default_rng(0)
    per_file = 20
    from vecsift.search.chunk import Chunk

    with store.write():
        store.reset(index._identity, dim)
    for first in range(0, chunks, 10_000):
        count = min(10_000, chunks - first)
        vectors = rng.standard_normal((count, dim)).astype(np.float32)
        vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
        with store.write():
            hashes = [f"h{first + i}" for i in range(count)]
            store.add_vectors(hashes, vectors)
            for file_start in range(0, count, per_file):
                entries = []
                path = f"pkg{(first + file_start) // 1000}/module_{first + file_start}.py"
                for i in range(file_start, min(file_start + per_file, count)):
                    text = "\n".join(source_lines[(first + i) * 7 % len(source_lines):][:12])
                    chunk = Chunk(path, "python", i * 10 + 1, i * 10 + 10, "function", f"f{i}", f"f{i}", text)
                    entries.append((chunk, hashes[i], index_text(text), f"f{i}", index_text(path)))
                store.put_file(path, 0, 0, f"c{first + file_start}", "python", None, entries)
    with store.write():
        store.set_meta(complete=1, last_refresh=time.time(), generation=1)
    store.close()
    return index


def scale_rows(work: Path, repeats: int, lines: list[str]) -> None:
    source_lines = [line for path in sorted(STDLIB.glob("*.py"))[:200]
                    for line in path.read_text(encoding="utf-8", errors="replace").splitlines() if line.strip()]
    rows = []
    for chunks in (10_000, 200_000):
        started = time.perf_counter()
        index = synthetic_index(work, chunks, source_lines)
        built = time.perf_counter() - started
        samples = time_queries(index, repeats)
        rows.append((f"{chunks} chunks, random unit vectors", f"{built:.0f} s",
                     f"{percentile(samples, 50) * 1000:.1f} ms", f"{percentile(samples, 95) * 1000:.1f} ms",
                     len(samples)))
        index.close()
    lines += [*markdown_table(["synthetic index", "build (no embedding)", "query p50", "query p95", "samples"], rows),
              ""]


def cold_cli_rows(work: Path, repeats: int, lines: list[str]) -> None:
    index_dir = work / "cli-indexes"
    command = [sys.executable, "-m", "vecsift", "search", "where is the index refreshed", str(REPO), "--json",
               "--index-dir", str(index_dir)]
    subprocess.run([sys.executable, "-m", "vecsift", "index", str(REPO), "--index-dir", str(index_dir)],
                   check=True, capture_output=True)
    walls = []
    for _ in range(repeats):
        started = time.perf_counter()
        subprocess.run(command, check=True, capture_output=True)
        walls.append(time.perf_counter() - started)
    profile = subprocess.run([sys.executable, "-X", "importtime", "-c", "import vecsift.cli.main"],
                             capture_output=True, text=True).stderr
    imports = sum(int(line.split("|")[1]) for line in profile.splitlines()
                  if line.startswith("import time:") and line.split("|")[2].strip() == "vecsift.cli.main") / 1e6
    phases = subprocess.run([sys.executable, "-c", _PHASES, str(REPO), str(index_dir)], check=True,
                            capture_output=True, text=True).stdout
    steps = json.loads(phases)
    peak_kib = steps.pop("peak_kib", 0)
    lines += markdown_table(["`vecsift search` in a fresh process, up-to-date index of this repository", "median"], [
        (f"wall, {repeats} runs", median_ms(walls)), ("of which importing vecsift's CLI", f"{imports * 1000:.0f} ms"),
        *((f"of which {name}", f"{seconds * 1000:.0f} ms") for name, seconds in steps.items())])
    lines += ["", f"Peak memory (its own VmHWM) of a search process: {peak_kib / 1024:.0f} MiB "
              "(the model's weights are a memory map; the vectors too).", ""]


_PHASES = """
import json, sys, time
t = time.perf_counter()
from vecsift.search import Index
index = Index(sys.argv[1], index_dir=sys.argv[2], warn=lambda m: None)
steps = {"opening the index": time.perf_counter() - t}
t = time.perf_counter(); index.ensure_fresh(); steps["freshness check (walk + stat)"] = time.perf_counter() - t
t = time.perf_counter(); index._encoder._load(); steps["loading the model (NumPy driver)"] = time.perf_counter() - t
t = time.perf_counter(); index.search("where is the index refreshed", refresh=False)
steps["the search itself (query embedding, ranking)"] = time.perf_counter() - t
with open("/proc/self/status") as status:  # this process's own peak (ru_maxrss counts the forking parent's)
    steps["peak_kib"] = next(int(line.split()[1]) for line in status if line.startswith("VmHWM"))
print(json.dumps(steps))
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--skip-build", action="store_true", help="skip the stdlib build (the slow part)")
    parser.add_argument("--write", action="store_true", help=f"write the section of {RESULTS.name}")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="vecsift-speed-"))
    lines = [f"Machine: {describe_machine()}.", ""]
    try:
        if not args.skip_build:
            stdlib_rows(work, args.repeats, lines)
        scale_rows(work, args.repeats, lines)
        cold_cli_rows(work, args.repeats, lines)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    body = "\n".join(lines)
    print(body)
    if args.write:
        write_section("## Search speed", "python -m benchmarks.search_speed --write", body)


if __name__ == "__main__":
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    main()
