"""Code search: walk → chunk → store → rank, behind :class:`Index`."""

from vecsift.search.index import Index, SearchResult
from vecsift.search.rank import MODES, Signals
from vecsift.search.refresh import RefreshSummary
from vecsift.search.walk import WalkOptions

__all__ = ["MODES", "Index", "RefreshSummary", "SearchResult", "Signals", "WalkOptions"]
