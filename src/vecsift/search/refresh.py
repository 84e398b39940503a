"""Incremental refresh: walk → compare → chunk what changed → embed what is new → apply at once.

Steps, each crash-safe:

1. The walk stats every file; a file whose size and mtime_ns match the index is
   unchanged. Others are read and hashed (blake3): same content (a checkout that
   only touched mtimes) updates the stat and nothing else.
2. Changed and new files are chunked; a chunk whose embedded text (header + code)
   has a vector in the cache is reused, the rest are embedded in steps, and each
   step's vectors are committed to the cache as they come. A refresh killed here
   loses at most one step: the next one reuses every committed vector.
3. All file and chunk changes are applied in one transaction, so a search sees the
   old index or the new one, never a mix.
4. When unused cached vectors outnumber used ones, the vector file is compacted.
"""

from __future__ import annotations

import hashlib
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import blake3
import numpy as np

from vecsift.models.config import ModelFiles
from vecsift.search.chunk import Chunk, chunk_text, embedding_text, line_windows
from vecsift.search.code_tokens import index_text
from vecsift.search.languages import language_of
from vecsift.search.store import IndexStore, StoredFile
from vecsift.search.walk import Skipped, WalkedFile, WalkOptions, read_source, walk

# Chunks embedded and committed together: a killed refresh loses at most one step (~10 s of work here).
# Larger steps sort more inputs by length together; 256 made a build 1.15x Embedder.embed, 2048 1.05x.
EMBED_STEP = 2048
# Unused cached vectors (kept so a branch switch back re-embeds nothing) are compacted away once they
# outnumber the used ones and this many.
COMPACT_MIN_ORPHANS = 1000
CHARS_PER_TOKEN = 3.0  # budget for the first cut; code runs ~3.3 characters per token (2.2 at the densest)
HEADER_TOKENS = 24  # room for the header (path, kind, scope) before the code
Embed = Callable[[list[str]], np.ndarray]
CountTokens = Callable[[list[str]], list[int]]


@dataclass
class RefreshSummary:
    """What one refresh did (``vecsift index --json`` prints these keys). Added and changed files are those whose
    content is now indexed; a file skipped (binary, not UTF-8, too large, unreadable) is counted under skipped
    only, so that the files added agree with ``vecsift status``."""

    files_added: int = 0
    files_changed: int = 0
    files_removed: int = 0
    chunks_embedded: int = 0
    chunks_reused: int = 0
    files_skipped: int = 0
    seconds: float = 0.0
    rebuilt: str | None = None  # why the index was rebuilt from scratch, when it was
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (path, reason)

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["skipped"] = [{"path": p, "reason": r} for p, r in self.skipped]
        return data

    def line(self) -> str:
        return (f"{self.files_added} files added, {self.files_changed} changed, {self.files_removed} removed; "
                f"{self.chunks_embedded} chunks embedded, {self.chunks_reused} reused; "
                f"{self.files_skipped} skipped; {self.seconds:.2f} s")


@dataclass(frozen=True)
class Changes:
    """What the stat-only comparison of the walk with the index found."""

    added: list[WalkedFile]
    modified: list[tuple[WalkedFile, StoredFile]]  # stat differs: content may or may not
    removed: list[StoredFile]

    @property
    def count(self) -> int:
        return len(self.added) + len(self.modified) + len(self.removed)


def model_fingerprint(files: ModelFiles) -> str:
    """Identifies a model's content cheaply: config, tokenizer and the weights' size."""
    digest = hashlib.blake2b(digest_size=12)
    for path in (files.directory / "config.json", files.tokenizer_path):
        digest.update(path.read_bytes())
    digest.update(str(files.weights_path.stat().st_size).encode())
    return digest.hexdigest()


def compare(root: Path, store: IndexStore, options: WalkOptions, skipped: Skipped | None = None) -> Changes:
    """Stat every file under ``root`` and compare with what the index holds."""
    stored = store.files()
    added: list[WalkedFile] = []
    modified: list[tuple[WalkedFile, StoredFile]] = []
    seen: set[str] = set()
    for file in walk(root, options, skipped):
        seen.add(file.path)
        known = stored.get(file.path)
        if known is None:
            added.append(file)
        elif known.size != file.size or known.mtime_ns != file.mtime_ns:
            modified.append((file, known))
    removed = [known for path, known in stored.items() if path not in seen]
    return Changes(added, modified, removed)


@dataclass
class _Prepared:
    """A changed or new file, read and chunked, waiting for the final transaction."""

    file: WalkedFile
    content_hash: str
    skipped: str | None
    # (chunk, text hash, keyword-index body, name, path) each; None: same content as indexed
    chunks: list[tuple[Chunk, str, str, str, str]] | None


class Refresher:
    """Brings one index up to date with its root (call under the writer lock)."""

    def __init__(self, root: Path, store: IndexStore, *, identity: dict[str, Any], options: WalkOptions,
                 max_tokens: int, path_in_text: bool, document_prompt: str, embed: Callable[[], Embed],
                 count_tokens: CountTokens, dim: Callable[[], int], progress: bool = False,
                 warn: Callable[[str], None] | None = None) -> None:
        self.root = root
        self.store = store
        self.identity = identity
        self.options = options
        self.max_tokens = max_tokens
        self.path_in_text = path_in_text
        self.document_prompt = document_prompt
        self._embed_factory = embed
        self._count_tokens = count_tokens
        self._dim = dim
        self.progress = progress
        self.warn = warn or (lambda message: print(f"vecsift: {message}", file=sys.stderr))

    def run(self, *, rebuild: bool = False) -> RefreshSummary:
        started = time.perf_counter()
        summary = RefreshSummary()
        reason = "--rebuild was asked for" if rebuild else self._rebuild_reason()
        if reason:
            with self.store.write():
                self.store.reset(self.identity, self._dim())
            summary.rebuilt = reason
            self.store.remove_retired()
        skipped = Skipped()
        changes = compare(self.root, self.store, self.options, skipped)
        prepared = [self._prepare(file) for file in changes.added] + \
                   [self._prepare(file, known) for file, known in changes.modified]
        touched = [p for p in prepared if p.chunks is None]
        rewritten = [p for p in prepared if p.chunks is not None]
        summary.chunks_embedded, summary.chunks_reused = self._embed_missing(rewritten)
        with self.store.write():
            self.store.remove_files(k.id for k in changes.removed)
            known = {known.path: known.id for _, known in changes.modified}
            for item in touched:
                self.store.touch_file(known[item.file.path], item.file.size, item.file.mtime_ns)
            for item in rewritten:
                self.store.put_file(item.file.path, item.file.size, item.file.mtime_ns, item.content_hash,
                                    language_of(item.file.path).name, item.skipped, item.chunks)
            generation = int(self.store.meta("generation") or 0) + (1 if changes.count else 0)
            self.store.set_meta(complete=1, last_refresh=time.time(), generation=generation)
            if changes.removed or rewritten:  # only then can vectors have lost their last chunk
                orphans, used = self.store.orphan_vectors()
                if orphans > max(used, COMPACT_MIN_ORPHANS):
                    self.store.compact_vectors()
        self.store.remove_retired()
        added = {f.path for f in changes.added}
        indexed = [p for p in rewritten if not p.skipped]  # a file skipped for its content counts as skipped only
        summary.files_added = sum(1 for p in indexed if p.file.path in added)
        summary.files_changed = len(indexed) - summary.files_added
        summary.files_removed = len(changes.removed)
        summary.skipped = skipped.entries + [(p.file.path, p.skipped) for p in rewritten if p.skipped]
        summary.files_skipped = len(summary.skipped)
        summary.seconds = time.perf_counter() - started
        return summary

    def _rebuild_reason(self) -> str | None:
        old = self.store.identity()
        if not old or not self.store.meta("vector_file"):
            return None if self.store.files() else "new index"
        changed = [key for key in sorted(set(old) | set(self.identity)) if old.get(key) != self.identity.get(key)]
        if not changed:
            return None
        described = "; ".join(f"{key}: {old.get(key)!r} → {self.identity.get(key)!r}" for key in changed)
        self.warn(f"the index at {self.store.directory} was built differently ({described}); rebuilding it")
        return f"changed {', '.join(changed)}"

    def _prepare(self, file: WalkedFile, known: StoredFile | None = None) -> _Prepared:
        try:
            data, text, reason = read_source(file)
        except OSError as err:  # vanished or unreadable since the walk
            self.warn(f"skipping {file.path}: cannot be read ({err.strerror or err})")
            return _Prepared(file, "", f"cannot be read ({err.strerror or err})", [])
        content_hash = blake3.blake3(data).hexdigest()
        if known is not None and known.hash == content_hash and known.skipped == reason:
            return _Prepared(file, content_hash, reason, None)
        if text is None:
            return _Prepared(file, content_hash, reason, [])
        chunks = self._fit(chunk_text(file.path, text, self._max_chars()))
        path_tokens = index_text(file.path)
        entries = []
        for chunk in chunks:
            embedded = self._model_text(chunk)
            entries.append((chunk, blake3.blake3(embedded.encode("utf-8")).hexdigest(), index_text(chunk.text),
                            index_text(f"{chunk.name} {chunk.scope}"), path_tokens))
        return _Prepared(file, content_hash, None, entries)

    def _model_text(self, chunk: Chunk) -> str:
        """What the model reads for ``chunk`` (its vector is cached under this text's hash)."""
        return self.document_prompt + embedding_text(chunk, with_path=self.path_in_text)

    def _max_chars(self) -> int:
        return max(200, int((self.max_tokens - HEADER_TOKENS) * CHARS_PER_TOKEN))

    def _fit(self, chunks: list[Chunk]) -> list[Chunk]:
        """Re-split chunks whose embedded text exceeds the token limit (counted exactly), so none is cut."""
        risky = [c for c in chunks if len(c.text) > (self.max_tokens - HEADER_TOKENS) * 2]
        if not risky:
            return chunks
        texts = [self._model_text(c) for c in risky]
        counts = dict(zip((id(c) for c in risky), self._count_tokens(texts), strict=True))
        fitted: list[Chunk] = []
        for chunk in chunks:
            tokens = counts.get(id(chunk), 0)
            if tokens <= self.max_tokens:
                fitted.append(chunk)
                continue
            lines = chunk.text.split("\n")
            budget = max(40, int(len(chunk.text) * (self.max_tokens - HEADER_TOKENS) / tokens * 0.9))
            pieces = [
                Chunk(chunk.path, chunk.language, chunk.start_line + s, chunk.start_line + e, chunk.kind, chunk.name,
                      chunk.scope, "\n".join(lines[s:e + 1]))
                for s, e in line_windows(0, len(lines) - 1, lines, budget)
            ]
            fitted.extend(self._fit(pieces) if len(pieces) > 1 else pieces)
        return fitted

    def _embed_missing(self, prepared: list[_Prepared]) -> tuple[int, int]:
        """Embed the chunk texts without a cached vector, committing each step; (embedded, reused)."""
        texts: dict[str, str] = {}
        total = 0
        for item in prepared:
            for chunk, text_hash, *_ in item.chunks or ():
                total += 1
                texts[text_hash] = self._model_text(chunk)
        cached = self.store.cached_hashes(texts)
        # Shortest first across the whole refresh, so each step holds texts of similar length, as one call over
        # everything would (the engine sorts within a call): without it a full build was 1.39x Embedder.embed.
        missing = sorted((h for h in texts if h not in cached), key=lambda h: len(texts[h]))
        if not missing:
            return 0, total
        embed = self._embed_factory()
        bar = _progress_bar(len(missing)) if self.progress else None
        try:
            for start in range(0, len(missing), EMBED_STEP):
                hashes = missing[start:start + EMBED_STEP]
                vectors = embed([texts[h] for h in hashes])
                with self.store.write():
                    self.store.add_vectors(hashes, vectors)
                if bar is not None:
                    bar.update(len(hashes))
        finally:
            if bar is not None:
                bar.close()
        return len(missing), total - len(missing)


def _progress_bar(total: int):
    from tqdm.auto import tqdm

    return tqdm(total=total, unit="chunk", desc="embedding", disable=None, dynamic_ncols=True)
