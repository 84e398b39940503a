"""Ranking: keyword (BM25) and semantic (cosine) candidates fused by Reciprocal Rank Fusion.

RRF (k = 60) adds ``1 / (k + rank)`` from each list a chunk appears in: it needs
no score calibration between BM25 and cosine, which live on unrelated scales.
On top of it, signals that the quality benchmark (``benchmarks/search_quality.py``)
keeps only if removing them costs NDCG@10 (see the ablation in RESULTS.md):

- ``name_match``: a chunk whose definition name is one of the query's words ranks
  as if it were also first in a third list;
- ``test_penalty``: chunks in test files are demoted unless the query is about tests;
- ``file_diversity``: at most ``MAX_PER_FILE`` results of one file before results of other files.

The ranking works on chunk ids, records and scores alone; it never touches files.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from vecsift.errors import UsageError

MODES = ("hybrid", "semantic", "keyword")
RRF_K = 60
CANDIDATES = 100  # per list, before fusion
KEYWORD_WEIGHTS = (1.0, 4.0, 2.0)  # BM25 weights of the body, the definition name and scope, the path
MAX_PER_FILE = 3
TEST_PENALTY = 0.5
_TEST_PATH = re.compile(r"(^|/)(tests?|spec|specs|__tests__|testdata|test_.*|.*_test\.\w+|.*\.(spec|test)\.\w+"
                        r"|.*Tests?\.\w+)(/|$)")
_TEST_WORDS = frozenset({"test", "tests", "testing", "spec", "specs", "fixture", "fixtures", "mock", "pytest"})


@dataclass(frozen=True)
class Signals:
    """Which ranking signals hybrid search applies on top of RRF (each one can be ablated)."""

    name_match: bool = True
    test_penalty: bool = True
    file_diversity: bool = True


@dataclass(frozen=True)
class Candidate:
    """What fusion needs to know of a chunk."""

    id: int
    path: str
    name: str


def check_mode(mode: str) -> str:
    if mode not in MODES:
        raise UsageError(f"unknown search mode {mode!r}; choose one of {', '.join(MODES)}")
    return mode


def is_test_path(path: str) -> bool:
    return bool(_TEST_PATH.search(path))


def reciprocal_rank_fusion(rankings: Sequence[Sequence[int]], k: int = RRF_K) -> dict[int, float]:
    """``{id: Σ 1 / (k + rank)}`` over the rankings (rank 1 is best)."""
    fused: dict[int, float] = {}
    for ranking in rankings:
        for rank, item in enumerate(ranking, start=1):
            fused[item] = fused.get(item, 0.0) + 1.0 / (k + rank)
    return fused


def fuse(keyword: Sequence[int], semantic: Sequence[int], candidates: dict[int, Candidate],
         query_words: Sequence[str], signals: Signals) -> list[tuple[int, float]]:
    """Hybrid ranking of the two candidate lists: (chunk id, score), best first."""
    scores = reciprocal_rank_fusion([keyword, semantic])
    words = {w.lower() for w in query_words}
    about_tests = bool(words & _TEST_WORDS)
    for chunk_id in scores:
        candidate = candidates[chunk_id]
        if signals.name_match and candidate.name and candidate.name.lower() in words:
            scores[chunk_id] += 1.0 / (RRF_K + 1)
        if signals.test_penalty and not about_tests and is_test_path(candidate.path):
            scores[chunk_id] *= TEST_PENALTY
    ranked = sorted(scores.items(), key=lambda item: (-item[1], item[0]))
    return diversify(ranked, candidates) if signals.file_diversity else ranked


def diversify(ranked: list[tuple[int, float]], candidates: dict[int, Candidate],
              per_file: int = MAX_PER_FILE) -> list[tuple[int, float]]:
    """The same results with at most ``per_file`` of one file ahead of every other file's results."""
    kept: list[tuple[int, float]] = []
    deferred: list[tuple[int, float]] = []
    seen: dict[str, int] = {}
    for item in ranked:
        path = candidates[item[0]].path
        seen[path] = seen.get(path, 0) + 1
        (kept if seen[path] <= per_file else deferred).append(item)
    return kept + deferred
