"""Ranking: keyword (BM25) and semantic (cosine) candidates fused by Reciprocal Rank Fusion.

RRF (k = 60) adds ``1 / (k + rank)`` from each list a chunk appears in: it needs
no score calibration between BM25 and cosine, which live on unrelated scales.
On top of it, signals that the quality benchmark (``benchmarks/search_quality.py``)
keeps only if removing them costs NDCG@10 (see the ablation in RESULTS.md):

- ``name_match``: when the query names a definition the way code does (``parse_args``,
  ``HTTPConnection``, ``Session.request``, ``walk()``, or a single word), a chunk with that
  name ranks as if it were also first in a third list. Plain English words do not count: a
  boost for every chunk named ``write`` or ``run`` cost 0.07 NDCG@10 on the stdlib set;
- ``test_penalty``: chunks in test files are demoted unless the query is about tests.

Measured and dropped: capping results per file (at most 3 of one file before other files' results)
cost 0.066 chunk Recall@10 and 0.011 MRR@10 across the sets: the answer is often the fourth chunk
of the file it is in. ``--files`` gives one result per file when that is what is wanted.

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
TEST_PENALTY = 0.5
_TEST_PATH = re.compile(r"(^|/)(tests?|spec|specs|__tests__|testdata|test_.*|.*_test\.\w+|.*\.(spec|test)\.\w+"
                        r"|.*Tests?\.\w+)(/|$)")
_QUERY_TOKEN = re.compile(r"[A-Za-z_][\w.]*(?:\(\))?")
_MIXED_CASE = re.compile(r"[a-z0-9][A-Z]|[A-Z].*[A-Z].*[a-z]")  # getName, HTTPConnection; not "Session"
_TEST_WORDS = frozenset({"test", "tests", "testing", "spec", "specs", "fixture", "fixtures", "mock", "pytest"})


@dataclass(frozen=True)
class Signals:
    """Which ranking signals hybrid search applies on top of RRF (each one can be ablated)."""

    name_match: bool = True
    test_penalty: bool = True


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


def named_identifiers(query: str) -> set[str]:
    """The definition names a query spells as code (lower-cased): ``snake_case``, ``camelCase``, dotted
    paths (each part), ``name()``; a one-word query counts as a name."""
    tokens = _QUERY_TOKEN.findall(query)
    if len(tokens) == 1:
        return {tokens[0].lower().rstrip("()")}
    names: set[str] = set()
    for token in tokens:
        if token.endswith("()") or "_" in token.strip("_") or "." in token or _MIXED_CASE.search(token):
            names.update(part.lower() for part in token.rstrip("()").split(".") if part)
    return names


def fuse(keyword: Sequence[int], semantic: Sequence[int], candidates: dict[int, Candidate],
         query: str, signals: Signals) -> list[tuple[int, float]]:
    """Hybrid ranking of the two candidate lists: (chunk id, score), best first."""
    scores = reciprocal_rank_fusion([keyword, semantic])
    names = named_identifiers(query) if signals.name_match else set()
    about_tests = bool({w.lower() for w in _QUERY_TOKEN.findall(query)} & _TEST_WORDS)
    for chunk_id in scores:
        candidate = candidates[chunk_id]
        if candidate.name and candidate.name.lower() in names:
            scores[chunk_id] += 1.0 / (RRF_K + 1)
        if signals.test_penalty and not about_tests and is_test_path(candidate.path):
            scores[chunk_id] *= TEST_PENALTY
    return sorted(scores.items(), key=lambda item: (-item[1], item[0]))
