"""Search quality: labelled queries over three trees, every ranking mode, an ablation of every signal.

Sets:
- ``docstring→function``: functions of the stdlib modules in ``search_sets.STDLIB_MODULES`` whose
  docstring's first sentence is the query; the indexed copy has every docstring blanked out (line
  numbers kept), so the query text is not in the index. Queries that contain the function's own
  name are reported apart (``…, name in query``).
- ``stdlib``, ``vecsift``, ``npm``: natural-language questions written by hand (``search_sets.py``) over
  the same stdlib modules, this repository's ``src/`` and ``tests/``, and npm's ``lib/`` (JavaScript).

Metrics: file-level NDCG@10 (files in order of their first chunk), chunk-level MRR@10 and Recall@10 (a
chunk matches an answer when it is in the answer's file and its scope names the answer's definition;
for docstring queries, when it holds the function's ``def`` line). Rows: keyword, semantic, hybrid,
hybrid without each signal, and grep (files ranked by how many query words they contain, then by
occurrences). Configurations: the index precision (bf16 and fp32) and whether the path is embedded.

    python -m benchmarks.search_quality [--write] [--configs bf16,fp32,bf16-nopath] [--docstrings 150]
"""

from __future__ import annotations

import argparse
import ast
import functools
import math
import random
import re
import shutil
import statistics
import sysconfig
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

from benchmarks.search_sets import NPM, STDLIB, STDLIB_MODULES, VECSIFT, Answer, Question
from benchmarks.shared import RESULTS, describe_machine, markdown_table, write_section
from vecsift.search import Index, SearchResult
from vecsift.search.code_tokens import query_words, words

REPO = Path(__file__).resolve().parent.parent
STDLIB_ROOT = Path(sysconfig.get_paths()["stdlib"])
NPM_ROOT = Path("/usr/lib/node_modules/npm")
DEPTH = 50  # chunks fetched per query: enough for 10 distinct files
ABLATIONS = {"name_match": "name match", "test_penalty": "test demotion"}
CONFIGS = {"bf16": ("bf16", True), "fp32": ("fp32", True), "bf16-nopath": ("bf16", False)}


@dataclass
class Scores:
    ndcg: list[float]
    mrr: list[float]
    recall: list[float]

    def mean(self) -> tuple[float, float, float]:
        return (statistics.fmean(self.ndcg), statistics.fmean(self.mrr) if self.mrr else math.nan,
                statistics.fmean(self.recall) if self.recall else math.nan)


def _matches(path: str, start: int, end: int, scope: str, answer: Answer) -> bool:
    file, symbol = answer
    if path != file:
        return False
    if symbol is None:
        return True
    if symbol.startswith("@"):
        return start <= int(symbol[1:]) <= end
    return symbol in scope.split(".")


def ndcg_at_10(files: list[str], answers: list[Answer]) -> float:
    relevant = {f for f, _ in answers}
    gains = [1.0 / math.log2(rank + 2) for rank, f in enumerate(files[:10]) if f in relevant]
    ideal = sum(1.0 / math.log2(rank + 2) for rank in range(min(len(relevant), 10)))
    return sum(gains) / ideal


def score_results(results: list[SearchResult], answers: list[Answer], scores: Scores) -> None:
    files = list(dict.fromkeys(r.path for r in results))
    scores.ndcg.append(ndcg_at_10(files, answers))
    top = results[:10]
    rank = next((i + 1 for i, r in enumerate(top) if any(_matches(r.path, r.start_line, r.end_line, r.scope, a)
                                                          for a in answers)), None)
    scores.mrr.append(1.0 / rank if rank else 0.0)
    found = [a for a in answers if any(_matches(r.path, r.start_line, r.end_line, r.scope, a) for r in top)]
    scores.recall.append(len(found) / len(answers))


@functools.cache
def _file_words(root: Path) -> dict[str, Counter[str]]:
    """Word counts of every text file under ``root`` (read once per tree)."""
    counts: dict[str, Counter[str]] = {}
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        try:
            counts[path.relative_to(root).as_posix()] = Counter(words(path.read_text(encoding="utf-8")))
        except (UnicodeDecodeError, OSError):
            continue
    return counts


def grep_files(root: Path, query: str) -> list[str]:
    """The baseline: files ranked by how many distinct query words they contain, then by occurrences."""
    wanted = set(query_words(query))
    ranked = []
    for path, counts in _file_words(root).items():
        present = [w for w in wanted if counts[w]]
        if present:
            ranked.append((len(present), sum(counts[w] for w in present), path))
    ranked.sort(key=lambda item: (-item[0], -item[1], item[2]))
    return [path for _, _, path in ranked]


# -- corpora ---------------------------------------------------------------------------------------

def _copy(files: list[tuple[Path, str]], destination: Path) -> Path:
    for source, relative in files:
        target = destination / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        if not target.exists() or target.read_bytes() != source.read_bytes():
            shutil.copyfile(source, target)  # unchanged copies keep their stats: a kept index stays fresh
    return destination


def blank_docstrings(text: str) -> tuple[str, list[tuple[str, int, str]]]:
    """The text with every docstring's lines blanked (numbering kept); (name, def line, first sentence) of
    each function whose docstring stood alone on its lines."""
    lines = text.split("\n")
    tree = ast.parse(text)
    functions: list[tuple[str, int, str]] = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
            continue
        body = node.body
        if not (body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant)
                and isinstance(body[0].value.value, str)):
            continue
        doc = body[0]
        first, last = doc.lineno - 1, doc.end_lineno - 1
        if lines[first][:doc.col_offset].strip() or lines[last][doc.end_col_offset:].strip():
            continue
        for row in range(first, last + 1):
            lines[row] = ""
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            sentence = re.split(r"(?<=[.!?])\s|\n\s*\n", doc.value.value.strip(), maxsplit=1)[0]
            sentence = " ".join(sentence.split())
            if len(sentence.split()) >= 4:
                line = node.decorator_list[0].lineno if node.decorator_list else node.lineno
                functions.append((node.name, line, sentence))
    return "\n".join(lines), functions


def build_corpora(work: Path, docstring_queries: int) -> dict[str, tuple[Path, list[Question]]]:
    corpora: dict[str, tuple[Path, list[Question]]] = {}
    stdlib_files = [(STDLIB_ROOT / m, m) for m in STDLIB_MODULES]
    corpora["stdlib"] = (_copy(stdlib_files, work / "stdlib"), STDLIB)
    stripped = work / "stdlib-stripped"
    candidates: list[tuple[str, Answer]] = []
    for source, relative in stdlib_files:
        text, functions = blank_docstrings(source.read_text(encoding="utf-8"))
        target = stripped / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        if not target.exists() or target.read_text(encoding="utf-8") != text:
            target.write_text(text, encoding="utf-8")
        candidates.extend((sentence, (relative, f"@{line}")) for name, line, sentence in functions
                          if not name.startswith("__"))
    random.Random(0).shuffle(candidates)
    picked = candidates[:docstring_queries]
    corpora["docstring→function"] = (stripped, [(q, [a]) for q, a in picked])
    names = {a: _function_name(stripped / a[0], int(a[1][1:])) for _, a in picked}
    named = [(q, [a]) for q, a in picked if _name_in_query(names[a], q)]
    corpora["docstring→function, name in query"] = (stripped, named)
    corpora["docstring→function, name not in query"] = (stripped, [(q, [a]) for q, a in picked
                                                                    if not _name_in_query(names[a], q)])
    own = [(p, p.relative_to(REPO).as_posix()) for folder in ("src", "tests") for p in (REPO / folder).rglob("*")
           if p.is_file() and "__pycache__" not in p.parts]
    corpora["vecsift"] = (_copy(own, work / "vecsift"), VECSIFT)
    if NPM_ROOT.is_dir():
        npm = [(p, p.relative_to(NPM_ROOT).as_posix()) for p in (NPM_ROOT / "lib").rglob("*") if p.is_file()]
        corpora["npm"] = (_copy(npm, work / "npm"), NPM)
    return corpora


def _function_name(path: Path, line: int) -> str:
    match = re.search(r"def\s+(\w+)", "\n".join(path.read_text().split("\n")[line - 1:line + 5]))
    return match.group(1) if match else ""


def _name_in_query(name: str, query: str) -> bool:
    parts = set(words(name))
    return bool(parts) and (name.lower() in query.lower() or parts <= set(words(query)))


# -- running ---------------------------------------------------------------------------------------

def evaluate(index: Index, questions: list[Question], root: Path) -> dict[str, Scores]:
    rows: dict[str, Scores] = {}
    variants: dict[str, Callable[[str], list[SearchResult]]] = {
        "keyword": lambda q: index.search(q, top_k=DEPTH, mode="keyword", refresh=False),
        "semantic": lambda q: index.search(q, top_k=DEPTH, mode="semantic", refresh=False),
        "hybrid": lambda q: index.search(q, top_k=DEPTH, refresh=False),
    }
    for signal, label in ABLATIONS.items():
        variants[f"hybrid − {label}"] = _ablated(index, signal)
    for name, run in variants.items():
        scores = rows[name] = Scores([], [], [])
        for query, answers in questions:
            score_results(run(query), answers, scores)
    grep = rows["grep (files only)"] = Scores([], [], [])
    for query, answers in questions:
        grep.ndcg.append(ndcg_at_10(grep_files(root, query), answers))
    return rows


def _ablated(index: Index, signal: str) -> Callable[[str], list[SearchResult]]:
    def run(query: str) -> list[SearchResult]:
        kept = index.signals
        index.signals = replace(kept, **{signal: False})
        try:
            return index.search(query, top_k=DEPTH, refresh=False)
        finally:
            index.signals = kept
    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--configs", default=",".join(CONFIGS), help="comma-separated: " + ", ".join(CONFIGS))
    parser.add_argument("--docstrings", type=int, default=150, help="docstring→function queries (default: 150)")
    parser.add_argument("--write", action="store_true", help=f"write the section of {RESULTS.name}")
    parser.add_argument("--work", type=Path, default=None,
                        help="keep trees and indexes in this folder and reuse them (re-ranking needs no re-embedding)")
    args = parser.parse_args()
    configs = [c.strip() for c in args.configs.split(",") if c.strip()]
    work = args.work or Path(tempfile.mkdtemp(prefix="vecsift-quality-"))
    try:
        corpora = build_corpora(work / "trees", args.docstrings)
        tables: dict[str, dict[str, dict[str, Scores]]] = {}
        builds: list[str] = []
        for config in configs:
            precision, path_in_text = CONFIGS[config]
            tables[config] = {}
            indexes: dict[Path, Index] = {}
            for set_name, (root, questions) in corpora.items():
                if root not in indexes:
                    indexes[root] = Index(root, index_dir=work / f"indexes-{config}", precision=precision,
                                          path_in_text=path_in_text, warn=lambda m: None)
                    started = time.perf_counter()
                    summary = indexes[root].refresh()
                    elapsed = time.perf_counter() - started
                    builds.append(f"{config} {root.name}: {summary.files_added} files, {summary.chunks_embedded} "
                                  f"chunks in {elapsed:.0f} s ({summary.chunks_embedded / elapsed:.0f} chunks/s)")
                    print(builds[-1], flush=True)
                tables[config][set_name] = evaluate(indexes[root], questions, root)
                print(f"{config} {set_name}: " + ", ".join(
                    f"{row} {scores.mean()[0]:.3f}" for row, scores in tables[config][set_name].items()), flush=True)
            for index in indexes.values():
                index.close()
        body = report(tables, corpora, builds)
        print(body)
        if args.write:
            write_section("## Search quality", "python -m benchmarks.search_quality --write", body)
    finally:
        if args.work is None:
            shutil.rmtree(work, ignore_errors=True)


def _fmt(value: float) -> str:
    return "—" if math.isnan(value) else f"{value:.3f}"


def report(tables: dict[str, dict[str, dict[str, Scores]]], corpora: dict, builds: list[str]) -> str:
    lines = [f"Machine: {describe_machine()}.", "",
             "Queries: " + "; ".join(f"{name} {len(questions)}" for name, (_, questions) in corpora.items()) + ".",
             "Index builds: " + "; ".join(builds) + ".", ""]
    headline_sets = [s for s in corpora if "name" not in s]
    for config, sets in tables.items():
        metrics = ["file NDCG@10", "chunk MRR@10", "chunk Recall@10"]
        per_set = [(set_name, row, *(f"{value:.3f}" if i == 0 else _fmt(value) for i, value in
                                     enumerate(scores.mean())))
                   for set_name, rows in sets.items() for row, scores in rows.items()]
        means = [(row, *(_fmt(statistics.fmean(sets[s][row].mean()[i] for s in headline_sets)) for i in range(3)))
                 for row in next(iter(sets.values()))]
        lines += [f"### Index {config}", "", *markdown_table(["set", "row", *metrics], per_set), "",
                  f"Mean over the sets {', '.join(headline_sets)} (each set weighs the same):", "",
                  *markdown_table(["row", *metrics], means), ""]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
