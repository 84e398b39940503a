"""The on-disk index: SQLite (files, chunks, keyword index, metadata) beside one vector file.

This is the only module that knows the format. Everything a reader sees comes from
one SQLite read transaction (WAL mode: readers never wait for the writer and never
see half of a write), and the vector rows it maps are the ones that snapshot counts
as committed (see :mod:`vecsift.search.vector_file`).

Tables: ``meta`` (schema version, index identity, vector file and committed rows,
state), ``files`` (path, size, mtime_ns, content hash; ``skipped`` holds why a file
has no chunks), ``chunks`` (lines, kind, name, scope, text, hash of the embedded
text), ``vectors`` (embedded-text hash → vector row: the cache that lets an edit
re-embed only changed chunks and a branch switch re-embed nothing it saw before),
``chunks_fts`` (FTS5 over code-aware tokens, rowid = chunk id).
"""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from vecsift.errors import IndexCorruptError, SearchIndexError
from vecsift.search import vector_file
from vecsift.search.chunk import Chunk

SCHEMA_VERSION = 1
DATABASE_NAME = "index.sqlite"
RECOVERY = "rebuild it with `vecsift index --rebuild PATH`"

_SCHEMA = """
CREATE TABLE meta(key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE files(
    id INTEGER PRIMARY KEY, path TEXT NOT NULL UNIQUE, size INTEGER NOT NULL, mtime_ns INTEGER NOT NULL,
    hash TEXT NOT NULL, language TEXT NOT NULL, skipped TEXT);
CREATE TABLE chunks(
    id INTEGER PRIMARY KEY, file_id INTEGER NOT NULL REFERENCES files(id) ON DELETE CASCADE,
    start_line INTEGER NOT NULL, end_line INTEGER NOT NULL, kind TEXT NOT NULL, name TEXT NOT NULL,
    scope TEXT NOT NULL, text TEXT NOT NULL, text_hash TEXT NOT NULL);
CREATE INDEX chunks_by_file ON chunks(file_id);
CREATE INDEX chunks_by_hash ON chunks(text_hash);
CREATE TABLE vectors(text_hash TEXT PRIMARY KEY, row INTEGER NOT NULL UNIQUE);
CREATE VIRTUAL TABLE chunks_fts USING fts5(body, name, path, tokenize="porter unicode61 tokenchars '_'");
"""


@dataclass(frozen=True)
class StoredFile:
    """What the index knows of a file: enough to tell, by stat, whether it changed."""

    id: int
    path: str
    size: int
    mtime_ns: int
    hash: str
    skipped: str | None


@dataclass(frozen=True)
class ChunkRecord:
    """A chunk as stored, with its id (the keyword index's rowid)."""

    id: int
    path: str
    language: str
    start_line: int
    end_line: int
    kind: str
    name: str
    scope: str
    text: str


@dataclass(frozen=True)
class ChunkTable:
    """Per-chunk arrays for ranking, aligned by position (loaded once per index generation)."""

    ids: np.ndarray  # (n,) int64 chunk ids
    rows: np.ndarray  # (n,) int64 vector rows
    file_ids: np.ndarray  # (n,) int64
    languages: np.ndarray  # (n,) object: language names
    paths: dict[int, str]  # file id → path


def remove_index_files(directory: Path) -> None:
    """Delete an index's database and vector files (``--rebuild``; call under the writer lock)."""
    for pattern in (f"{DATABASE_NAME}*", "vectors-*.f32*"):
        for path in directory.glob(pattern):
            path.unlink(missing_ok=True)


def _connect(path: Path, writable: bool) -> sqlite3.Connection:
    if writable:
        connection = sqlite3.connect(path, timeout=60, isolation_level=None, check_same_thread=False)
    else:
        # A folder nobody can write holds no writer either: read the file as it is, without SQLite's shared memory.
        uri = path.resolve().as_uri() + ("?mode=ro" if os.access(path.parent, os.W_OK) else "?immutable=1")
        connection = sqlite3.connect(uri, uri=True, timeout=60, isolation_level=None, check_same_thread=False)
    connection.execute("PRAGMA foreign_keys=ON")
    connection.execute("PRAGMA busy_timeout=60000")
    return connection


class IndexStore:
    """An open index directory. ``writable`` stores are used under the writer lock only."""

    def __init__(self, directory: Path, *, writable: bool) -> None:
        self.directory = directory
        self.writable = writable
        self.path = directory / DATABASE_NAME
        exists = self.path.exists()
        if not exists and not writable:
            raise SearchIndexError(f"no index at {directory}; build one with `vecsift index PATH`")
        try:
            if not exists:
                self._create()
            self._db = _connect(self.path, writable)
            if writable:
                self._db.execute("PRAGMA journal_mode=WAL")
                self._db.execute("PRAGMA synchronous=FULL")
            self._check_schema()
        except sqlite3.DatabaseError as err:
            raise IndexCorruptError(f"the index database {self.path} is damaged or not vecsift's ({err}); "
                                    f"{RECOVERY}") from err
        self._check_vectors()

    # -- opening ---------------------------------------------------------------------------------

    def _create(self) -> None:
        """A new database with the schema, written under a temporary name and renamed into place."""
        temporary = self.path.with_name(self.path.name + ".partial")
        temporary.unlink(missing_ok=True)
        connection = sqlite3.connect(temporary, isolation_level=None)
        try:
            connection.executescript(_SCHEMA)
            connection.executemany("INSERT INTO meta VALUES (?, ?)", [
                ("schema_version", str(SCHEMA_VERSION)), ("vector_rows", "0"), ("vector_file", ""), ("dim", "0"),
                ("identity", "{}"), ("complete", "0"), ("generation", "0"), ("last_refresh", "0")])
        finally:
            connection.close()
        os.replace(temporary, self.path)

    def _check_schema(self) -> None:
        try:
            version = self.meta("schema_version")
        except sqlite3.OperationalError as err:  # no meta table: some other SQLite database
            raise IndexCorruptError(f"{self.path} is not a vecsift index ({err}); {RECOVERY}") from err
        if version != str(SCHEMA_VERSION):
            raise IndexCorruptError(f"{self.path} has index format {version}, this vecsift reads "
                                    f"{SCHEMA_VERSION}; {RECOVERY}")

    def _check_vectors(self) -> None:
        meta = self.all_meta()
        try:
            rows, dim = int(meta["vector_rows"]), int(meta["dim"])
        except (KeyError, ValueError) as err:
            raise IndexCorruptError(f"{self.path} has damaged metadata ({err}); {RECOVERY}") from err
        if meta.get("vector_file"):
            try:
                vector_file.check(self.directory / meta["vector_file"], dim, rows)
            except IndexCorruptError as err:
                raise IndexCorruptError(f"{err}; {RECOVERY}") from err

    def integrity_check(self) -> None:
        """SQLite's own page-level check (reads the whole database); raises :class:`IndexCorruptError`."""
        try:
            result = [row[0] for row in self._db.execute("PRAGMA quick_check")]
        except sqlite3.DatabaseError as err:
            raise IndexCorruptError(f"the index database {self.path} is damaged ({err}); {RECOVERY}") from err
        if result != ["ok"]:
            raise IndexCorruptError(f"the index database {self.path} is damaged ({'; '.join(result[:3])}); "
                                    f"{RECOVERY}")

    def close(self) -> None:
        self._db.close()

    # -- transactions ----------------------------------------------------------------------------

    @contextlib.contextmanager
    def read(self) -> Iterator[IndexStore]:
        """One consistent snapshot for every read inside the block."""
        self._db.execute("BEGIN")
        try:
            yield self
        finally:
            self._db.execute("COMMIT")

    @contextlib.contextmanager
    def write(self) -> Iterator[IndexStore]:
        """One atomic step: everything in the block is committed together, or nothing is."""
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield self
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    def _guard(self, sql: str, parameters: Sequence[Any] | dict = ()) -> sqlite3.Cursor:
        try:
            return self._db.execute(sql, parameters)
        except sqlite3.DatabaseError as err:  # query terms are always quoted: no FTS5 syntax error reaches here
            raise IndexCorruptError(f"the index database {self.path} cannot be read ({err}); {RECOVERY}") from err

    # -- metadata --------------------------------------------------------------------------------

    def meta(self, key: str) -> str | None:
        row = self._db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return row[0] if row else None

    def all_meta(self) -> dict[str, str]:
        return dict(self._guard("SELECT key, value FROM meta").fetchall())

    def set_meta(self, **values: object) -> None:
        self._db.executemany("INSERT OR REPLACE INTO meta VALUES (?, ?)", [(k, str(v)) for k, v in values.items()])

    def identity(self) -> dict[str, Any]:
        return json.loads(self.meta("identity") or "{}")

    @property
    def dim(self) -> int:
        return int(self.meta("dim") or 0)

    @property
    def vector_rows(self) -> int:
        return int(self.meta("vector_rows") or 0)

    # -- resetting -------------------------------------------------------------------------------

    def reset(self, identity: dict[str, Any], dim: int) -> None:
        """Empty the index for a new identity (model, precision, chunker): inside a :meth:`write` block."""
        self._db.execute("DELETE FROM chunks_fts")
        self._db.execute("DELETE FROM chunks")
        self._db.execute("DELETE FROM files")
        self._db.execute("DELETE FROM vectors")
        name = self._new_vector_file(dim)
        self.set_meta(identity=json.dumps(identity, sort_keys=True), dim=dim, vector_file=name, vector_rows=0,
                      complete=0, generation=int(self.meta("generation") or 0) + 1)

    def _new_vector_file(self, dim: int) -> str:
        name = f"vectors-{time.time_ns():x}.f32"
        vector_file.create(self.directory / name, dim)
        return name

    def remove_retired(self) -> None:
        """Delete vector files no committed state references (after the commit)."""
        current = self.meta("vector_file")
        for path in self.directory.glob("vectors-*.f32*"):
            if path.name != current:
                path.unlink(missing_ok=True)

    # -- files -----------------------------------------------------------------------------------

    def files(self) -> dict[str, StoredFile]:
        return {row[1]: StoredFile(*row) for row in
                self._guard("SELECT id, path, size, mtime_ns, hash, skipped FROM files")}

    def touch_file(self, file_id: int, size: int, mtime_ns: int) -> None:
        """Same content, new stat (a checkout that only touched mtimes)."""
        self._db.execute("UPDATE files SET size = ?, mtime_ns = ? WHERE id = ?", (size, mtime_ns, file_id))

    def remove_files(self, file_ids: Iterable[int]) -> None:
        ids = list(file_ids)
        for start in range(0, len(ids), 500):
            part = ids[start:start + 500]
            marks = ",".join("?" * len(part))
            self._db.execute(
                f"DELETE FROM chunks_fts WHERE rowid IN (SELECT id FROM chunks WHERE file_id IN ({marks}))", part)
            self._db.execute(f"DELETE FROM files WHERE id IN ({marks})", part)  # chunks cascade

    def put_file(self, path: str, size: int, mtime_ns: int, content_hash: str, language: str, skipped: str | None,
                 chunks: Sequence[tuple[Chunk, str, str, str, str]]) -> None:
        """Insert or replace a file and its chunks; each chunk comes with (text hash, body, name, path) tokens."""
        old = self._db.execute("SELECT id FROM files WHERE path = ?", (path,)).fetchone()
        if old:
            self.remove_files([old[0]])
        file_id = self._db.execute(
            "INSERT INTO files(path, size, mtime_ns, hash, language, skipped) VALUES (?, ?, ?, ?, ?, ?)",
            (path, size, mtime_ns, content_hash, language, skipped)).lastrowid
        for chunk, text_hash, body_tokens, name_tokens, path_tokens in chunks:
            chunk_id = self._db.execute(
                "INSERT INTO chunks(file_id, start_line, end_line, kind, name, scope, text, text_hash) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (file_id, chunk.start_line, chunk.end_line, chunk.kind, chunk.name, chunk.scope, chunk.text,
                 text_hash)).lastrowid
            self._db.execute("INSERT INTO chunks_fts(rowid, body, name, path) VALUES (?, ?, ?, ?)",
                             (chunk_id, body_tokens, name_tokens, path_tokens))

    # -- vectors ---------------------------------------------------------------------------------

    def cached_hashes(self, hashes: Iterable[str]) -> set[str]:
        """Which of ``hashes`` already have a committed vector."""
        wanted = list(set(hashes))
        found: set[str] = set()
        for start in range(0, len(wanted), 500):
            part = wanted[start:start + 500]
            marks = ",".join("?" * len(part))
            found.update(r[0] for r in self._db.execute(f"SELECT text_hash FROM vectors WHERE text_hash IN ({marks})",
                                                        part))
        return found

    def add_vectors(self, hashes: Sequence[str], vectors: np.ndarray) -> None:
        """Append vectors and record them (inside a :meth:`write` block: the rows count once it commits)."""
        start = self.vector_rows
        end = vector_file.append(self.directory / str(self.meta("vector_file")), self.dim, start, vectors)
        self._db.executemany("INSERT OR REPLACE INTO vectors(text_hash, row) VALUES (?, ?)",
                             zip(hashes, range(start, end), strict=True))
        self.set_meta(vector_rows=end)

    def orphan_vectors(self) -> tuple[int, int]:
        """(vectors no chunk uses, vectors in use)."""
        total = self._db.execute("SELECT count(*) FROM vectors").fetchone()[0]
        used = self._db.execute("SELECT count(DISTINCT text_hash) FROM chunks").fetchone()[0]
        return total - used, used

    def compact_vectors(self) -> None:
        """Rewrite the vector file with only the rows chunks use (inside a :meth:`write` block)."""
        old_name = str(self.meta("vector_file"))
        matrix = vector_file.read(self.directory / old_name, self.dim, self.vector_rows)
        used = self._db.execute(
            "SELECT v.text_hash, v.row FROM vectors v WHERE v.text_hash IN (SELECT text_hash FROM chunks) "
            "ORDER BY v.row").fetchall()
        name = self._new_vector_file(self.dim)
        rows = np.array([row for _, row in used], dtype=np.int64)
        vector_file.append(self.directory / name, self.dim, 0, matrix[rows] if len(rows) else
                           np.zeros((0, self.dim), np.float32))
        self._db.execute("DELETE FROM vectors")
        self._db.executemany("INSERT INTO vectors(text_hash, row) VALUES (?, ?)",
                             ((h, i) for i, (h, _) in enumerate(used)))
        self.set_meta(vector_file=name, vector_rows=len(used))

    def vectors(self) -> np.ndarray:
        """The committed vector rows of this snapshot, memory-mapped (call inside :meth:`read`)."""
        name = self.meta("vector_file")
        if not name:
            return np.zeros((0, self.dim), dtype=np.float32)
        try:
            return vector_file.read(self.directory / name, self.dim, self.vector_rows)
        except IndexCorruptError as err:
            raise IndexCorruptError(f"{err}; {RECOVERY}") from err

    # -- reading for search ----------------------------------------------------------------------

    def chunk_table(self) -> ChunkTable:
        rows = self._guard(
            "SELECT c.id, v.row, c.file_id, f.language FROM chunks c JOIN files f ON f.id = c.file_id "
            "JOIN vectors v ON v.text_hash = c.text_hash ORDER BY c.id").fetchall()
        paths = dict(self._guard("SELECT id, path FROM files WHERE skipped IS NULL").fetchall())
        if not rows:
            empty = np.zeros(0, dtype=np.int64)
            return ChunkTable(empty, empty, empty, np.zeros(0, dtype=object), paths)
        ids, vector_rows, file_ids, languages = zip(*rows, strict=True)
        return ChunkTable(np.array(ids, dtype=np.int64), np.array(vector_rows, dtype=np.int64),
                          np.array(file_ids, dtype=np.int64), np.array(languages, dtype=object), paths)

    def keyword_matches(self, fts_query: str, weights: tuple[float, float, float],
                        limit: int) -> list[tuple[int, float]]:
        """(chunk id, BM25 score, higher is better) for an FTS5 query, best first."""
        sql = ("SELECT rowid, -bm25(chunks_fts, ?, ?, ?) AS score FROM chunks_fts WHERE chunks_fts MATCH ? "
               "ORDER BY score DESC LIMIT ?")
        return self._guard(sql, (*weights, fts_query, limit)).fetchall()

    def chunks_by_id(self, chunk_ids: Sequence[int]) -> dict[int, ChunkRecord]:
        found: dict[int, ChunkRecord] = {}
        ids = list(chunk_ids)
        for start in range(0, len(ids), 500):
            part = ids[start:start + 500]
            marks = ",".join("?" * len(part))
            for row in self._guard(
                    "SELECT c.id, f.path, f.language, c.start_line, c.end_line, c.kind, c.name, c.scope, c.text "
                    f"FROM chunks c JOIN files f ON f.id = c.file_id WHERE c.id IN ({marks})", part):
                found[row[0]] = ChunkRecord(*row)
        return found

    def chunk_at(self, path: str, line: int) -> ChunkRecord | None:
        """The smallest chunk of ``path`` that contains ``line``."""
        row = self._guard(
            "SELECT c.id FROM chunks c JOIN files f ON f.id = c.file_id WHERE f.path = ? AND c.start_line <= ? "
            "AND c.end_line >= ? ORDER BY c.end_line - c.start_line LIMIT 1", (path, line, line)).fetchone()
        return self.chunks_by_id([row[0]])[row[0]] if row else None

    def counts(self) -> dict[str, int]:
        files = self._guard("SELECT count(*) FROM files WHERE skipped IS NULL").fetchone()[0]
        chunks = self._guard("SELECT count(*) FROM chunks").fetchone()[0]
        return {"files": files, "chunks": chunks}

    def size_on_disk(self) -> int:
        return sum(p.stat().st_size for p in self.directory.iterdir() if p.is_file())
