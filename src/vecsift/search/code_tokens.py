"""Code-aware words for the keyword index and for queries.

``parseHTTPResponse2`` is indexed as itself and as ``parse``, ``http``, ``response``,
``2``; ``max_file_size`` as itself and as ``max``, ``file``, ``size``. So a query for
"file size" finds the identifier, and a query for the identifier finds it exactly.
Documents and queries go through the same functions; SQLite's FTS5 then stems
(porter) and ranks with BM25.
"""

from __future__ import annotations

import re

_WORD = re.compile(r"[^\W\d_][\w]*|\d+|_+\w+")
_PART = re.compile(r"[A-Z]+(?=[A-Z][a-z])|[A-Z]?[a-z]+|[A-Z]+|\d+|[^\W\d_A-Za-z]+")
# Words a question is made of that say nothing about code; dropped from queries only.
STOP_WORDS = frozenset({
    "a", "an", "and", "are", "as", "at", "be", "been", "by", "can", "could", "did", "do", "does", "doing", "for",
    "from", "has", "have", "how", "i", "if", "in", "into", "is", "it", "its", "me", "my", "of", "on", "or", "our",
    "should", "so", "than", "that", "the", "their", "them", "then", "there", "these", "this", "those", "to", "was",
    "we", "were", "what", "when", "where", "which", "while", "who", "whom", "why", "will", "with", "would", "you",
    "your",
})


def identifier_parts(word: str) -> list[str]:
    """``getHTTPResponse_code`` → ``['get', 'http', 'response', 'code']`` (lower case)."""
    return [part.lower() for piece in word.split("_") for part in _PART.findall(piece)]


def words(text: str) -> list[str]:
    """Every identifier, lower-cased, followed by its parts when it has more than one."""
    out: list[str] = []
    for match in _WORD.finditer(text):
        word = match.group().strip("_")
        if not word:
            continue
        out.append(word.lower())
        parts = identifier_parts(word)
        if len(parts) > 1:
            out.extend(parts)
    return out


def index_text(text: str) -> str:
    """The keyword-index form of a text: its words separated by spaces."""
    return " ".join(words(text))


def query_words(query: str) -> list[str]:
    """The distinct words of a query that carry meaning, in order (stop words dropped unless nothing else is left)."""
    seen: dict[str, None] = {}
    for word in words(query):
        seen.setdefault(word, None)
    meaningful = [w for w in seen if w not in STOP_WORDS]
    return meaningful or list(seen)


def fts_query(query: str) -> str | None:
    """An FTS5 MATCH expression: any of the query's words (each quoted); None when there is none."""
    terms = query_words(query)
    return " OR ".join(f'"{term}"' for term in terms) if terms else None
