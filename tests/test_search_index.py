"""The search index: answers, incremental refresh by counts, rebuilds, damage, concurrency, bad input."""

from __future__ import annotations

import errno
import os
import shutil
import sqlite3
import threading
from pathlib import Path

import numpy as np
import pytest

from vecsift.errors import IndexBusyError, IndexCorruptError, SearchIndexError, UsageError
from vecsift.search import Index, Signals
from vecsift.search import vector_file as vector_file_module
from vecsift.search.lock import WriterLock
from vecsift.search.rank import Candidate, fuse, named_identifiers, reciprocal_rank_fusion

FIXTURES = Path(__file__).parent / "fixtures" / "polyglot"


@pytest.fixture
def repo(tmp_path) -> Path:
    root = tmp_path / "repo"
    shutil.copytree(FIXTURES, root)
    return root


def open_index(root: Path, messages: list[str] | None = None, **options) -> Index:
    """The bundled model on the NumPy driver in fp32: deterministic vectors, no torch import."""
    settings = {"index_dir": root.parent / "indexes", "precision": "fp32", "driver": "numpy", "workers": 1}
    settings.update(options)
    return Index(root, warn=(messages.append if messages is not None else lambda m: None), **settings)


def ranking(index: Index, query: str, **options) -> list[tuple[str, int, int, float]]:
    return [(h.path, h.start_line, h.end_line, round(h.score, 5)) for h in index.search(query, **options)]


# -- answers ---------------------------------------------------------------------------------------

@pytest.mark.parametrize(("query", "expected"), [
    ("retry a request with exponential backoff", "session.py"),
    ("least recently used cache", "cache.rs"),
    ("deposit money into a bank account", "Account.java"),
    ("push a value onto a linked list", "list.c"),
    ("health check endpoint", "server.go"),
])
def test_the_expected_file_comes_first(repo, query, expected):
    with open_index(repo) as index:
        for mode in ("hybrid", "semantic"):
            assert index.search(query, top_k=3, mode=mode)[0].path == expected, mode


def test_keyword_mode_finds_identifiers_by_their_parts(repo):
    with open_index(repo) as index:
        hits = index.search("total price", mode="keyword")
        assert hits[0].path == "cart.js" and hits[0].name == "totalPrice"


def test_results_carry_lines_kind_name_and_text(repo):
    with open_index(repo) as index:
        hit = index.search("Session.request", top_k=1)[0]  # a qualified name, as code spells it
    lines = (repo / hit.path).read_text().split("\n")
    assert hit.text == "\n".join(lines[hit.start_line - 1:hit.end_line])
    assert (hit.kind, hit.name, hit.scope, hit.language) == ("method", "request", "Session.request", "python")


def test_language_glob_and_threshold_filters(repo):
    with open_index(repo) as index:
        assert {h.language for h in index.search("function", top_k=20, languages="go,rust")} <= {"go", "rust"}
        assert {h.path for h in index.search("function", top_k=20, globs=["*.py"])} == {"session.py"}
        scores = [h.score for h in index.search("cache", top_k=20, mode="semantic", threshold=0.3)]
        assert scores and min(scores) >= 0.3


def test_find_similar_excludes_the_chunk_itself(repo):
    (repo / "copy.py").write_text((repo / "session.py").read_text())
    with open_index(repo) as index:
        index.refresh()
        similar = index.find_similar("session.py", 13, top_k=3)
    assert (similar[0].path, similar[0].start_line) == ("copy.py", 12)
    assert similar[0].score > 0.85  # the same code under another path (the path is part of the embedded text)
    assert all(not (h.path == "session.py" and h.start_line <= 13 <= h.end_line) for h in similar)


# -- bad input -------------------------------------------------------------------------------------

@pytest.mark.parametrize(("arguments", "message"), [
    ({"query": ""}, "query is empty"), ({"query": "  \n"}, "query is empty"),
    ({"query": "x", "top_k": 0}, "top_k must be a positive integer"),
    ({"query": "x", "top_k": -3}, "top_k must be a positive integer"),
    ({"query": "x", "mode": "fuzzy"}, "unknown search mode"),
    ({"query": "x", "languages": "py,cobol"}, "unknown language 'cobol'"),
])
def test_bad_search_arguments_are_usage_errors(repo, arguments, message):
    with open_index(repo) as index, pytest.raises(UsageError, match=message):
        index.search(**arguments)


def test_bad_roots(tmp_path):
    with pytest.raises(UsageError, match="does not exist"):
        open_index(tmp_path / "missing")
    (tmp_path / "f.py").write_text("x")
    with pytest.raises(UsageError, match="is a file"):
        open_index(tmp_path / "f.py")


def test_an_unreadable_root_is_a_usage_error(repo, monkeypatch):
    real_access = os.access
    monkeypatch.setattr(os, "access", lambda path, mode: False if Path(path) == repo else real_access(path, mode))
    with pytest.raises(UsageError, match="cannot be read"):
        open_index(repo)


def test_an_empty_repository_has_no_results_and_no_error(tmp_path):
    root = tmp_path / "empty"
    root.mkdir()
    (root / "image.png").write_bytes(b"\x89PNG\0\0")
    with open_index(root) as index:
        assert index.search("anything") == []
        assert index.status()["files"] == 0


def test_binary_non_utf8_and_minified_files_are_skipped_and_counted(repo):
    (repo / "blob.py").write_bytes(b"\0\1\2binary")
    (repo / "latin1.py").write_bytes("caf\xe9 = 1\n".encode("latin-1"))
    (repo / "one_line.js").write_text("x" * 5_000_000)
    with open_index(repo) as index:
        summary = index.refresh()
        reasons = dict(summary.skipped)
        assert reasons["blob.py"] == "binary (NUL byte)"
        assert reasons["latin1.py"] == "not valid UTF-8 (line 1)"
        assert reasons["one_line.js"].startswith("larger than")
        assert summary.files_skipped == 3
        assert summary.files_added == index.status()["files"] == len(list(FIXTURES.iterdir()))  # skipped apart
        assert not any(h.path in reasons for h in index.search("caf", top_k=50, mode="keyword"))
        second = index.refresh()  # skipped files are remembered: not read again while unchanged
        assert (second.files_added, second.files_changed, second.chunks_embedded) == (0, 0, 0)


# -- incremental refresh (counted, never timed) ------------------------------------------------

def test_nothing_changed_embeds_nothing(repo):
    with open_index(repo) as index:
        first = index.refresh()
        assert first.files_added == len(list(FIXTURES.iterdir())) and first.chunks_embedded > 50
        again = index.refresh()
    assert (again.files_added, again.files_changed, again.files_removed, again.chunks_embedded) == (0, 0, 0, 0)


def test_an_edit_re_embeds_only_the_changed_chunks(repo):
    with open_index(repo) as index:
        index.refresh()
        path = repo / "session.py"
        path.write_text(path.read_text().replace("min(60, 2 ** attempt)", "min(120, 3 ** attempt)"))
        summary = index.refresh()
        assert (summary.files_changed, summary.chunks_embedded) == (1, 1)
        assert summary.chunks_reused == len([h for h in index.search("x", top_k=200, globs=["session.py"])]) - 1


def test_touching_mtimes_re_embeds_nothing(repo):
    with open_index(repo) as index:
        index.refresh()
        for path in repo.iterdir():
            os.utime(path, ns=(1, 1))
        summary = index.refresh()
    assert (summary.files_changed, summary.chunks_embedded) == (0, 0)


def test_branch_switch_back_and_forth(repo):
    original = (repo / "cache.rs").read_text()
    feature = original.replace("self.map.get(key)", "self.map.get(key).or_else(|| None)")
    with open_index(repo) as index:
        index.refresh()
        (repo / "cache.rs").write_text(feature)
        assert index.refresh().chunks_embedded == 1
        (repo / "cache.rs").write_text(original)  # back: content and mtime change again
        back = index.refresh()
        assert (back.files_changed, back.chunks_embedded) == (1, 0)
        (repo / "cache.rs").write_text(feature)
        assert index.refresh().chunks_embedded == 0


def test_rename_re_embeds_only_that_file_when_the_path_is_embedded(repo):
    with open_index(repo) as index:
        index.refresh()
        chunks = len([h for h in index.search("x", top_k=200, globs=["cart.js"])])
        (repo / "cart.js").rename(repo / "basket.js")
        summary = index.refresh()
        assert (summary.files_added, summary.files_removed, summary.chunks_embedded) == (1, 1, chunks)


def test_rename_re_embeds_nothing_without_the_path_in_the_text(repo):
    with open_index(repo, path_in_text=False) as index:
        index.refresh()
        (repo / "cart.js").rename(repo / "basket.js")
        (repo / "more").mkdir()
        shutil.copy(repo / "list.c", repo / "more" / "list_copy.c")
        summary = index.refresh()
        assert (summary.files_added, summary.files_removed, summary.chunks_embedded) == (2, 1, 0)
        assert index.search("checkout pays with a card", top_k=1)[0].path == "basket.js"


def test_deleted_files_leave_the_index(repo):
    with open_index(repo) as index:
        index.refresh()
        (repo / "cache.rs").unlink()
        assert index.refresh().files_removed == 1
        assert all(h.path != "cache.rs" for h in index.search("least recently used cache", top_k=20))


def test_search_refreshes_what_changed_first(repo):
    with open_index(repo) as index:
        index.refresh()
        (repo / "new.py").write_text("def parse_invoice_totals(rows):\n    return sum(rows)\n")
        assert index.search("parse invoice totals", top_k=1)[0].path == "new.py"
        assert index.changes().count == 0


@pytest.mark.parametrize("mode", ["hybrid", "semantic", "keyword"])
def test_per_file_gives_the_best_chunk_of_each_of_the_top_k_files(repo, mode):
    (repo / "invoices.py").write_text("".join(
        f"def parse_invoice_totals_{n}(rows):\n    \"\"\"Parse invoice totals, variant {n}.\"\"\"\n"
        f"    return sum(rows) + {n}\n\n\n" for n in range(12)))
    with open_index(repo) as index:
        chunks = index.search("parse invoice totals", top_k=30, mode=mode)
        files = index.search("parse invoice totals", top_k=5, mode=mode, per_file=True)
    assert [h.path for h in chunks[:5]] == ["invoices.py"] * 5  # the scenario: one file crowds the top
    best = {}
    for hit in chunks:
        best.setdefault(hit.path, hit)
    expected = list(best.values())[:5]
    if mode == "keyword":  # only chunks holding a query word rank: as many files as have one
        expected = [h for h in expected if h.score > 0]
    assert [(h.path, h.start_line, h.score) for h in files] == [(h.path, h.start_line, h.score) for h in expected]
    assert len({h.path for h in files}) == len(files) == len(expected) >= 2


def test_no_refresh_answers_from_the_index_as_it_is(repo):
    with open_index(repo) as index:
        index.refresh()
        (repo / "new.py").write_text("def parse_invoice_totals(rows):\n    return sum(rows)\n")
        assert all(h.path != "new.py" for h in index.search("parse invoice totals", refresh=False))
        assert index.status()["stale_files"] == 1


def test_a_changed_precision_or_model_rebuilds(repo, make_bert):
    messages: list[str] = []
    with open_index(repo, messages) as index:
        index.refresh()
    with open_index(repo, messages, precision="bf16", driver=None) as index:
        summary = index.refresh()
        assert summary.rebuilt == "changed precision" and summary.chunks_embedded > 50
    with open_index(repo, messages, model=str(make_bert())) as index:
        summary = index.refresh()
        assert summary.rebuilt.startswith("changed model") and summary.chunks_reused == 0
        assert index.search("cache", top_k=1)
    assert any("rebuilding" in m for m in messages)


def test_compaction_drops_unused_vectors_and_keeps_answers(repo, monkeypatch):
    with open_index(repo) as index:
        index.refresh()
        before = ranking(index, "least recently used cache")
        monkeypatch.setattr("vecsift.search.refresh.COMPACT_MIN_ORPHANS", 0)
        for path in [p for p in repo.iterdir() if p.name != "cache.rs"]:
            path.unlink()
        summary = index.refresh()
        assert summary.files_removed == len(list(FIXTURES.iterdir())) - 1
        store = index._open_reader()
        with store.read():
            orphans, used = store.orphan_vectors()
            assert orphans == 0 and store.vector_rows == used
        assert [r for r in before if r[0] == "cache.rs"][:1] == ranking(index, "least recently used cache")[:1]
        assert len(list(index.directory.glob("vectors-*.f32"))) == 1


# -- damage ----------------------------------------------------------------------------------------

def _built(repo: Path) -> Index:
    index = open_index(repo)
    index.refresh()
    index.close()
    return index


def _vector_path(index: Index) -> Path:
    return next(index.directory.glob("vectors-*.f32"))


@pytest.mark.parametrize("damage", ["garbage", "truncated", "foreign"])
def test_a_damaged_database_is_a_typed_error_and_rebuild_recovers(repo, damage):
    index = _built(repo)
    expected = ranking(open_index(repo), "least recently used cache")
    database = index.directory / "index.sqlite"
    for suffix in ("-wal", "-shm"):
        Path(str(database) + suffix).unlink(missing_ok=True)
    if damage == "garbage":
        database.write_bytes(os.urandom(8192))
    elif damage == "truncated":
        with database.open("r+b") as handle:
            handle.truncate(database.stat().st_size // 3)
    else:
        database.unlink()
        sqlite3.connect(database).execute("CREATE TABLE notes(x)").connection.close()
    with pytest.raises(IndexCorruptError, match="vecsift index --rebuild"):
        open_index(repo).search("cache", refresh=False)
    with pytest.raises(IndexCorruptError):
        open_index(repo).refresh()
    with open_index(repo) as index:
        index.refresh(rebuild=True)
        index.check()
        assert ranking(index, "least recently used cache") == expected


@pytest.mark.parametrize("damage", ["truncated", "foreign", "missing"])
def test_a_damaged_vector_file_is_a_typed_error_and_rebuild_recovers(repo, damage):
    index = _built(repo)
    path = _vector_path(index)
    if damage == "truncated":
        with path.open("r+b") as handle:
            handle.truncate(path.stat().st_size - 4)
    elif damage == "foreign":
        path.write_bytes(b"NOT VECTORS" + bytes(path.stat().st_size))
    else:
        path.unlink()
    with pytest.raises(IndexCorruptError, match="vecsift index --rebuild"):
        open_index(repo).search("cache", refresh=False)
    with open_index(repo) as index:
        index.refresh(rebuild=True)
        assert index.search("least recently used cache", top_k=1)[0].path == "cache.rs"


def test_a_full_disk_leaves_the_old_index_intact(repo, monkeypatch):
    with open_index(repo) as index:
        index.refresh()
        before = ranking(index, "least recently used cache")
        (repo / "more.py").write_text("def more():\n    return 1\n")

        def full(*args, **kwargs):
            raise OSError(errno.ENOSPC, "No space left on device")

        monkeypatch.setattr(vector_file_module, "append", full)
        with pytest.raises(SearchIndexError, match="No space left on device.*previous index is unchanged"):
            index.refresh()
        monkeypatch.undo()
        assert ranking(index, "least recently used cache", refresh=False) == before
        index.check()
        assert index.refresh().files_added == 1


def test_a_read_only_index_folder_can_still_be_searched(repo, monkeypatch):
    index = _built(repo)
    expected = ranking(open_index(repo), "least recently used cache")
    (repo / "new.py").write_text("x = 1\n")
    real_access = os.access

    def access(path, mode):
        if Path(path) == index.directory and mode & os.W_OK:
            return False
        return real_access(path, mode)

    monkeypatch.setattr(os, "access", access)
    messages: list[str] = []
    with open_index(repo, messages) as reader:
        assert ranking(reader, "least recently used cache") == expected
        assert any("read-only" in m for m in messages)
        with pytest.raises(SearchIndexError, match="read-only"):
            reader.refresh()


def test_searching_before_any_build_without_refresh_says_so(repo):
    with pytest.raises(SearchIndexError, match="no index at .*vecsift index"):
        open_index(repo).search("cache", refresh=False)


# -- concurrency -----------------------------------------------------------------------------------

def test_a_second_writer_fails_with_no_wait_and_waits_otherwise(repo):
    index = open_index(repo)
    index.refresh()
    events: list[str] = []
    lock = WriterLock(index.directory)
    lock.acquire()
    with pytest.raises(IndexBusyError, match="is writing the index"):
        open_index(repo).refresh(wait=False)
    waiting = threading.Event()

    def second_writer():
        writer = open_index(repo, [])
        writer.warn = lambda message: (events.append("waiting"), waiting.set())
        writer.refresh()
        events.append("second writer done")

    thread = threading.Thread(target=second_writer)
    thread.start()
    assert waiting.wait(30)
    events.append("first writer releases")
    lock.release()
    thread.join(60)
    assert events == ["waiting", "first writer releases", "second writer done"]


def test_a_search_during_a_refresh_sees_the_old_index_and_does_not_wait(repo):
    index = open_index(repo)
    index.refresh()
    before = ranking(index, "least recently used cache")
    (repo / "cache2.rs").write_text((repo / "cache.rs").read_text().replace("Lru", "Lfu"))
    in_embed, release = threading.Event(), threading.Event()
    writer = open_index(repo)
    real_embed = writer._embed_function

    def slow_embed():
        embed = real_embed()

        def run(texts):
            in_embed.set()
            assert release.wait(60)
            return embed(texts)

        return run

    writer._embed_function = slow_embed
    thread = threading.Thread(target=writer.refresh)
    thread.start()
    assert in_embed.wait(60)
    messages: list[str] = []
    with open_index(repo, messages) as reader:
        assert ranking(reader, "least recently used cache") == before  # answered while the writer holds the lock
        assert any("another process is updating" in m for m in messages)
    release.set()
    thread.join(60)
    assert "cache2.rs" in {h.path for h in index.search("least recently used cache", refresh=False)}


# -- ranking arithmetic ----------------------------------------------------------------------------

def test_reciprocal_rank_fusion_arithmetic():
    fused = reciprocal_rank_fusion([[1, 2, 3], [3, 1]], k=60)
    assert fused[1] == pytest.approx(1 / 61 + 1 / 62)
    assert fused[2] == pytest.approx(1 / 62)
    assert fused[3] == pytest.approx(1 / 63 + 1 / 61)
    assert sorted(fused, key=fused.get, reverse=True) == [1, 3, 2]


def test_fusion_signals():
    candidates = {1: Candidate(1, "src/a.py", "helper"), 2: Candidate(2, "tests/test_a.py", "parse"),
                  3: Candidate(3, "src/b.py", "parse")}
    plain = dict(fuse([1, 2, 3], [1, 2, 3], candidates, "parse()", Signals(False, False)))
    assert plain[1] > plain[2] > plain[3]
    named = dict(fuse([1, 2, 3], [1, 2, 3], candidates, "where is parse() called", Signals(True, False)))
    assert named[3] == pytest.approx(plain[3] + 1 / 61) and named[3] > named[1]
    english = dict(fuse([1, 2, 3], [1, 2, 3], candidates, "parse the file", Signals(True, False)))
    assert english == plain  # a plain word is not a name
    demoted = dict(fuse([1, 2, 3], [1, 2, 3], candidates, "x y", Signals(False, True)))
    assert demoted[2] == pytest.approx(plain[2] / 2)
    about_tests = dict(fuse([1, 2, 3], [1, 2, 3], candidates, "test of x", Signals(False, True)))
    assert about_tests[2] == pytest.approx(plain[2])


@pytest.mark.parametrize(("query", "names"), [
    ("parse", {"parse"}), ("lru_cache", {"lru_cache"}), ("how does HTTPConnection send", {"httpconnection"}),
    ("Session.request retries", {"session", "request"}), ("call walk() on a tree", {"walk"}),
    ("write rows to a file", set()), ("getUserName helper", {"getusername"}),
])
def test_named_identifiers(query, names):
    assert named_identifiers(query) == names


def test_vector_rows_round_trip(tmp_path):
    path = tmp_path / "v.f32"
    vector_file_module.create(path, 4)
    rows = vector_file_module.append(path, 4, 0, np.eye(4, dtype=np.float32)[:3])
    rows = vector_file_module.append(path, 4, 2, np.full((1, 4), 7, np.float32))  # cuts the uncommitted third row
    assert rows == 3
    assert np.array_equal(vector_file_module.read(path, 4, 3), np.vstack([np.eye(4)[:2], np.full((1, 4), 7)]))


def test_watch_refreshes_after_a_change_and_stops_when_asked(repo):
    from vecsift.search.watch import watch

    summaries = []
    built, refreshed, stop = threading.Event(), threading.Event(), threading.Event()

    def on_refresh(summary):
        summaries.append(summary)
        (refreshed if built.is_set() else built).set()

    with open_index(repo) as index:
        thread = threading.Thread(target=watch, args=(index,),
                                  kwargs={"on_refresh": on_refresh, "stop": stop, "debounce_ms": 100})
        thread.start()
        try:
            assert built.wait(60)  # the first refresh builds the index, then the watcher listens
            stop.wait(0.5)
            (repo / "watched.py").write_text("def newly_watched_function():\n    return 42\n")
            assert refreshed.wait(60)
        finally:
            stop.set()
            thread.join(30)
        assert not thread.is_alive()
        assert summaries[0].files_added == len(list(FIXTURES.iterdir()))
        assert (summaries[1].files_added, summaries[1].chunks_embedded) == (1, 1)
        assert index.search("newly watched function", top_k=1, refresh=False)[0].path == "watched.py"


def test_an_interrupted_first_build_is_incomplete_then_resumes(repo, monkeypatch):
    monkeypatch.setattr("vecsift.search.refresh.EMBED_STEP", 16)
    index = open_index(repo)
    make_embed = index._embed_function
    calls = []

    def failing_after_two_steps():
        embed = make_embed()

        def run(texts):
            calls.append(len(texts))
            if len(calls) > 2:
                raise KeyboardInterrupt  # as Ctrl-C would, between two committed steps
            return embed(texts)

        return run

    index._embed_function = failing_after_two_steps
    with pytest.raises(KeyboardInterrupt):
        index.refresh()
    with pytest.raises(SearchIndexError, match="incomplete .*vecsift index"):
        open_index(repo).search("cache", refresh=False)
    with open_index(repo) as resumed:
        summary = resumed.refresh()
        assert summary.chunks_reused == 32  # the two committed steps
        assert summary.chunks_embedded + summary.chunks_reused == resumed.status()["chunks"]
        assert resumed.search("least recently used cache", top_k=1, refresh=False)[0].path == "cache.rs"
