"""`Index`: code search over one folder — build, refresh and query its persistent index.

```python
from vecsift.search import Index
index = Index("path/to/repo")            # the index lives in the user cache folder
index.refresh()                           # incremental: re-embeds only chunks that changed
for hit in index.search("retry with exponential backoff", top_k=5):
    print(hit.path, hit.start_line, hit.end_line, hit.score, hit.kind, hit.name)
```

The front doors (``vecsift search``/``index``/``status``, the server, MCP) all go
through this class; it wires the stages together and owns no format or ranking
rule of its own.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from vecsift.backend.loader import auto_precision
from vecsift.backend.precision import AUTO, check_name
from vecsift.errors import SearchIndexError, UsageError, is_int, positive_int
from vecsift.models.config import load_model_files, read_prompts
from vecsift.models.resolve import DEFAULT_MODEL
from vecsift.search import rank
from vecsift.search.chunk import CHUNKER_VERSION
from vecsift.search.code_tokens import fts_query
from vecsift.search.languages import parse_languages
from vecsift.search.location import index_dir_for
from vecsift.search.lock import WriterLock
from vecsift.search.query_encoder import QueryEncoder
from vecsift.search.refresh import Changes, Refresher, RefreshSummary, compare, model_fingerprint
from vecsift.search.store import DATABASE_NAME, ChunkRecord, ChunkTable, IndexStore, remove_index_files
from vecsift.search.walk import DEFAULT_MAX_FILE_SIZE, WalkOptions, check_root, matches_globs, walk
from vecsift.tokenizer import Tokenizer, tokenizer_for


@dataclass(frozen=True)
class SearchResult:
    """One ranked chunk (``vecsift search --json`` prints these fields)."""

    path: str  # relative to the indexed root
    start_line: int
    end_line: int
    score: float  # hybrid: fused RRF score; semantic: cosine; keyword: BM25
    kind: str
    name: str
    scope: str
    language: str
    text: str

    def as_dict(self, *, content: bool = True) -> dict[str, Any]:
        data = asdict(self)
        if not content:
            del data["text"]
        return data


def check_search_arguments(query: str, top_k: int, mode: str,
                           languages: str | Sequence[str] | None) -> frozenset[str] | None:
    """Validate a search before any work is done; the languages it names (None: all)."""
    if not isinstance(query, str) or not query.strip():
        raise UsageError("the query is empty; give some words or code to search for")
    positive_int("top_k", top_k)
    rank.check_mode(mode)
    return parse_languages(languages)


#: with ``per_file``, candidates per ranking list for each file asked for (a file may hold many of them)
PER_FILE_POOL = 10
_DUPLICATE_BLOCK = 2048  # rows compared at once by find_duplicates (a 2048 × n float32 block)


class Index:
    """The search index of one root folder (see the module docstring)."""

    def __init__(
        self,
        root: str | os.PathLike[str] = ".",
        *,
        model: str = DEFAULT_MODEL,
        index_dir: str | os.PathLike[str] | None = None,
        repo_local: bool = False,
        precision: str = "auto",
        driver: str | None = None,
        workers: int | None = None,
        batch_size: int = 32,
        hidden: bool = False,
        ignore_files: bool = True,
        max_file_size: int = DEFAULT_MAX_FILE_SIZE,
        path_in_text: bool = True,
        query_prompt: str | None = None,
        document_prompt: str | None = None,
        signals: rank.Signals | None = None,
        warn: Callable[[str], None] | None = None,
    ) -> None:
        self.root = check_root(root)
        self.model = model
        self.directory = index_dir_for(self.root, index_dir, repo_local)
        self.walk_options = WalkOptions(hidden=hidden, ignore_files=ignore_files, max_file_size=max_file_size)
        files = load_model_files(model)
        prompts = read_prompts(files.directory)
        self.query_prompt = prompts.query if query_prompt is None else query_prompt
        self.document_prompt = prompts.document if document_prompt is None else document_prompt
        self.precision = (auto_precision("cpu", model, files, driver).precision if precision == AUTO
                          else check_name(precision))
        self.driver = driver
        self.workers = workers
        self.batch_size = batch_size
        self.path_in_text = path_in_text
        self.signals = signals or rank.Signals()
        self.warn = warn or (lambda message: print(f"vecsift: {message}", file=sys.stderr))
        self._files = files
        self._identity = {
            "model": model, "model_fingerprint": model_fingerprint(files), "precision": self.precision,
            "chunker_version": CHUNKER_VERSION, "path_in_text": path_in_text, "document_prompt": self.document_prompt,
        }
        self._encoder = QueryEncoder(model, self.query_prompt)
        self._embedder: Any = None
        self._tokenizer: Tokenizer | None = None
        self._reader: IndexStore | None = None
        self._cache_key: tuple | None = None
        self._table: ChunkTable | None = None
        self._vectors: np.ndarray | None = None

    # -- writing ---------------------------------------------------------------------------------

    def refresh(self, *, rebuild: bool = False, wait: bool = True, progress: bool = False) -> RefreshSummary:
        """Bring the index up to date with the files (built on first use); one writer at a time.

        ``wait=False`` raises :class:`IndexBusyError` instead of waiting for another writer.
        """
        self._make_directory()
        with WriterLock(self.directory, wait=wait, on_wait=self.warn):
            return self._refresh_locked(rebuild=rebuild, progress=progress)

    def _make_directory(self) -> None:
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise SearchIndexError(f"cannot create the index folder {self.directory}: {err.strerror or err}") from err
        if not os.access(self.directory, os.W_OK):
            raise SearchIndexError(f"the index folder {self.directory} is read-only; the index can be searched "
                                   "(--no-refresh) but not updated")

    def _refresh_locked(self, *, rebuild: bool, progress: bool) -> RefreshSummary:
        if rebuild:
            remove_index_files(self.directory)  # also what recovers a damaged index
        store = IndexStore(self.directory, writable=True)
        try:
            refresher = Refresher(
                self.root, store, identity=self._identity, options=self.walk_options,
                max_tokens=self._max_tokens(), path_in_text=self.path_in_text,
                document_prompt=self.document_prompt, embed=self._embed_function,
                count_tokens=self._encoder_tokenizer().count_tokens, dim=self._dim, progress=progress,
                warn=self.warn)
            return refresher.run(rebuild=rebuild)
        except OSError as err:
            raise SearchIndexError(f"cannot write the index at {self.directory} ({err.strerror or err}); "
                                   "the previous index is unchanged") from err
        finally:
            store.close()

    def _max_tokens(self) -> int:
        return self._encoder_tokenizer().default_max_tokens

    def _encoder_tokenizer(self) -> Tokenizer:
        """The model's tokenizer, loaded on first use (chunk budgets and token counts need it)."""
        if self._tokenizer is None:
            self._tokenizer = tokenizer_for(self._files)
        return self._tokenizer

    def _dim(self) -> int:
        return int(self._files.config.get("hidden_size") or self._embed_function_dim())

    def _embed_function_dim(self) -> int:
        return int(self._embed_function()(["dimension probe"]).shape[1])

    def _embed_function(self) -> Callable[[list[str]], np.ndarray]:
        if self._embedder is None:
            from vecsift.embedder import Embedder

            self._embedder = Embedder(self.model, precision=self.precision, driver=self.driver,
                                      batch_size=self.batch_size, workers=self.workers)
        return self._embedder.embed

    # -- reading ---------------------------------------------------------------------------------

    def changes(self) -> Changes:
        """What changed on disk since the last refresh (stat only; content is not read)."""
        store = self._open_reader()
        with store.read():
            return compare(self.root, store, self.walk_options)

    def _open_reader(self) -> IndexStore:
        if self._reader is None:
            self._reader = IndexStore(self.directory, writable=False)
        return self._reader

    def ensure_fresh(self, *, progress: bool = False) -> RefreshSummary | None:
        """Refresh when files changed (or there is no index yet); never waits for another writer."""
        if (self.directory / DATABASE_NAME).exists():
            store = self._open_reader()
            with store.read():
                complete = store.meta("complete") == "1"
                if complete and store.identity() == self._identity and \
                        compare(self.root, store, self.walk_options).count == 0:
                    return None
        existing = next(p for p in (self.directory, *self.directory.parents) if p.exists())
        if not os.access(existing, os.W_OK):
            self.warn(f"the index folder {self.directory} is read-only: searching it as it is")
            return None
        self._make_directory()
        lock = WriterLock(self.directory, wait=False)
        if not lock.acquire():
            self.warn("another process is updating this index: answering from the last complete refresh")
            return None
        try:
            return self._refresh_locked(rebuild=False, progress=progress)
        finally:
            lock.release()

    def _snapshot(self, store: IndexStore) -> tuple[ChunkTable, np.ndarray]:
        """Per-chunk arrays and the vector matrix of the current snapshot (cached until the index changes)."""
        meta = store.all_meta()
        if meta.get("complete") != "1":
            raise SearchIndexError(f"the index at {self.directory} is incomplete (its first build did not finish); "
                                   f"run `vecsift index {self.root}` to finish it")
        key = (meta.get("generation"), meta.get("vector_file"), meta.get("vector_rows"))
        if key != self._cache_key or self._table is None or self._vectors is None:
            self._table = store.chunk_table()
            self._vectors = store.vectors()
            self._cache_key = key
        return self._table, self._vectors

    def search(self, query: str, *, top_k: int = 10, mode: str = "hybrid", threshold: float | None = None,
               languages: str | Sequence[str] | None = None, globs: Sequence[str] = (),
               refresh: bool = True, per_file: bool = False) -> list[SearchResult]:
        """The ``top_k`` best chunks for ``query``; refreshes changed files first unless ``refresh=False``.

        ``per_file``: the best chunk of each file, for the ``top_k`` best files (``vecsift search --files``), so
        that a file with many matching chunks does not crowd the others out."""
        chosen_languages = check_search_arguments(query, top_k, mode, languages)
        if refresh:
            self.ensure_fresh()
        store = self._open_reader()
        with store.read():
            table, vectors = self._snapshot(store)
            allowed = self._filter(table, chosen_languages, tuple(globs))
            pool = max(rank.CANDIDATES, top_k * (PER_FILE_POOL if per_file else 3))
            keyword = self._keyword(store, query, table, allowed, pool) if mode != "semantic" else []
            semantic = self._semantic(query, table, vectors, allowed, pool) if mode != "keyword" else []
            records: dict[int, ChunkRecord] = {}  # each chunk's record, fetched once
            if mode == "keyword":
                ranked = keyword
            elif mode == "semantic":
                ranked = semantic
            else:
                ids = list(dict.fromkeys([c for c, _ in keyword] + [c for c, _ in semantic]))
                records = store.chunks_by_id(ids)
                candidates = {i: rank.Candidate(i, records[i].path, records[i].name) for i in ids}
                ranked = rank.fuse([c for c, _ in keyword], [c for c, _ in semantic], candidates, query,
                                   self.signals)
            if threshold is not None:
                ranked = [(c, s) for c, s in ranked if s >= threshold]
            if per_file:
                records.update(store.chunks_by_id([c for c, _ in ranked if c not in records]))
                best: dict[str, tuple[int, float]] = {}  # each file's first (best) chunk, in rank order
                for c, s in ranked:
                    if c in records:
                        best.setdefault(records[c].path, (c, s))
                ranked = list(best.values())
            ranked = ranked[:top_k]
            records.update(store.chunks_by_id([c for c, _ in ranked if c not in records]))
        return [self._result(records[c], s) for c, s in ranked if c in records]

    def find_similar(self, path: str, line: int, *, top_k: int = 10) -> list[SearchResult]:
        """Chunks most like the chunk that holds ``path:line`` (itself excluded)."""
        positive_int("top_k", top_k)
        store = self._open_reader()
        with store.read():
            table, vectors = self._snapshot(store)
            record = store.chunk_at(path, line)
            if record is None:
                raise UsageError(f"no indexed chunk holds {path}:{line}")
            position = int(np.searchsorted(table.ids, record.id))
            query = np.asarray(vectors[table.rows[position]], dtype=np.float32)
            ranked = [(c, s) for c, s in self._cosine(query, table, vectors, None, top_k + 1) if c != record.id]
            records = store.chunks_by_id([c for c, _ in ranked[:top_k]])
        return [self._result(records[c], s) for c, s in ranked[:top_k] if c in records]

    def find_duplicates(self, *, threshold: float = 0.95, limit: int = 50) -> list[tuple[SearchResult, SearchResult]]:
        """Pairs of chunks whose vectors have cosine ≥ ``threshold``, most similar first (at most ``limit``).

        Compares every chunk with every other in blocks (O(n²·dim) multiply-adds: about a second per
        10k chunks here); overlapping windows of one definition are not reported as duplicates.
        """
        if not (is_int(threshold) or isinstance(threshold, float)) or not 0 < threshold <= 1:
            raise UsageError(f"threshold must be a number in (0, 1], got {threshold!r}")
        positive_int("limit", limit)
        store = self._open_reader()
        with store.read():
            table, vectors = self._snapshot(store)
            matrix = np.asarray(vectors[table.rows], dtype=np.float32)
            found: list[tuple[float, int, int]] = []
            cap = limit * 10  # candidates kept per block: room for the overlapping windows skipped below
            for start in range(0, len(matrix), _DUPLICATE_BLOCK):
                scores = matrix[start:start + _DUPLICATE_BLOCK] @ matrix[start:].T
                rows, cols = np.nonzero(scores >= threshold)
                keep = cols > rows  # each unordered pair once, never a chunk with itself
                rows, cols = rows[keep], cols[keep]
                values = scores[rows, cols]
                if len(values) > cap:
                    best = np.argpartition(-values, cap - 1)[:cap]
                    rows, cols, values = rows[best], cols[best], values[best]
                found.extend(zip(values.tolist(), (rows + start).tolist(), (cols + start).tolist(), strict=True))
            found = sorted(found, key=lambda item: -item[0])[:cap]
            records = store.chunks_by_id([int(table.ids[i]) for _, a, b in found for i in (a, b)])
        pairs = []
        for score, a, b in found:
            first, second = records[int(table.ids[a])], records[int(table.ids[b])]
            overlapping = first.start_line <= second.end_line and second.start_line <= first.end_line
            if first.path == second.path and overlapping:
                continue  # windows of one long definition
            pairs.append((self._result(first, score), self._result(second, score)))
            if len(pairs) == limit:
                break
        return pairs

    def _filter(self, table: ChunkTable, languages: frozenset[str] | None, globs: tuple[str, ...]) -> np.ndarray | None:
        """A mask over the chunk table (None: everything is allowed)."""
        if languages is None and not globs:
            return None
        mask = np.ones(len(table.ids), dtype=bool)
        if languages is not None:
            mask &= np.isin(table.languages, sorted(languages))
        if globs:
            ok = {fid for fid, path in table.paths.items() if matches_globs(path, globs)}
            mask &= np.isin(table.file_ids, sorted(ok))
        return mask

    def _keyword(self, store: IndexStore, query: str, table: ChunkTable, allowed: np.ndarray | None,
                 pool: int) -> list[tuple[int, float]]:
        expression = fts_query(query)
        if expression is None:
            return []
        limit = pool if allowed is None else pool * 20
        matches = store.keyword_matches(expression, rank.KEYWORD_WEIGHTS, limit)
        if allowed is not None:
            permitted = set(table.ids[allowed].tolist())
            matches = [(c, s) for c, s in matches if c in permitted]
        return matches[:pool]

    def _semantic(self, query: str, table: ChunkTable, vectors: np.ndarray, allowed: np.ndarray | None,
                  pool: int) -> list[tuple[int, float]]:
        if len(table.ids) == 0:
            return []
        return self._cosine(self._encoder.encode(query), table, vectors, allowed, pool)

    @staticmethod
    def _cosine(query: np.ndarray, table: ChunkTable, vectors: np.ndarray, allowed: np.ndarray | None,
                pool: int) -> list[tuple[int, float]]:
        scores = (vectors @ query.astype(np.float32))[table.rows]
        if allowed is not None:
            scores = np.where(allowed, scores, -np.inf)
        count = min(pool, int(np.isfinite(scores).sum()))
        if count == 0:
            return []
        top = np.argpartition(-scores, count - 1)[:count]
        top = top[np.argsort(-scores[top], kind="stable")]
        return [(int(table.ids[i]), float(scores[i])) for i in top]

    @staticmethod
    def _result(record: ChunkRecord, score: float) -> SearchResult:
        return SearchResult(record.path, record.start_line, record.end_line, round(float(score), 6), record.kind,
                            record.name, record.scope, record.language, record.text)

    # -- status ----------------------------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        """Root, index location, model, counts, size on disk, last refresh, files changed since."""
        facts: dict[str, Any] = {"root": str(self.root), "index_dir": str(self.directory), "model": self.model,
                                 "files": 0, "chunks": 0, "bytes": 0, "last_refresh": None, "stale_files": None,
                                 "precision": self.precision, "complete": False}
        if not (self.directory / DATABASE_NAME).exists():
            facts["stale_files"] = sum(1 for _ in walk(self.root, self.walk_options))
            return facts
        store = self._open_reader()
        with store.read():
            meta = store.all_meta()
            facts.update(store.counts())
            facts["bytes"] = store.size_on_disk()
            refreshed = float(meta.get("last_refresh") or 0)
            facts["last_refresh"] = time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(refreshed)) if refreshed \
                else None
            facts["complete"] = meta.get("complete") == "1"
            facts["precision"] = store.identity().get("precision", self.precision)
            facts["stale_files"] = compare(self.root, store, self.walk_options).count
        return facts

    def check(self) -> None:
        """Full integrity check of the database and the vector file (raises :class:`IndexCorruptError`)."""
        store = self._open_reader()
        store.integrity_check()

    def close(self) -> None:
        if self._reader is not None:
            self._reader.close()
            self._reader = None
        self._table = self._vectors = None
        self._cache_key = None

    def __enter__(self) -> Index:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

