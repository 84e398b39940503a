"""Crash safety: a refresh killed with SIGKILL at random moments never costs the index or its vectors."""

from __future__ import annotations

import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from vecsift.search import Index
from vecsift.search.store import IndexStore

FIXTURES = Path(__file__).parent / "fixtures" / "polyglot"
TRIALS = 24  # half kill a first build, half an incremental refresh
QUERIES = ("least recently used cache", "retry with backoff", "deposit into an account", "health check")

# A refresh in its own process, embedding in small, slowed-down steps so that kills land in every phase
# (imports, walk and chunking, between and inside embedding steps, the final transaction).
REFRESH_SCRIPT = """
import sys, time
import vecsift.search.refresh as refresh
from vecsift.search import Index

refresh.EMBED_STEP = 4
root, index_dir, model = sys.argv[1:4]
index = Index(root, index_dir=index_dir, model=model, precision="fp32", driver="numpy", workers=1)
make_embed = index._embed_function

def slowed():
    embed = make_embed()
    def run(texts):
        time.sleep(0.02)
        return embed(texts)
    return run

index._embed_function = slowed
print("refreshing", flush=True)
index.refresh()
print("done", flush=True)
"""


def _index(root: Path, index_dir: Path, model: Path) -> Index:
    return Index(root, index_dir=index_dir, model=str(model), precision="fp32", driver="numpy", workers=1,
                 warn=lambda message: None)


def _answers(index: Index) -> list[list[tuple[str, int, int, float]]]:
    return [[(h.path, h.start_line, h.end_line, round(h.score, 5)) for h in index.search(q, top_k=8, refresh=False)]
            for q in QUERIES]


def _apply_branch(root: Path) -> None:
    """The incremental trials' change: edits, an addition, a deletion."""
    session = root / "session.py"
    session.write_text(session.read_text().replace("min(60, 2 ** attempt)", "min(90, 3 ** attempt)"))
    (root / "cache.rs").write_text((root / "cache.rs").read_text() + "\npub fn clear_all() {}\n")
    (root / "jobs.py").write_text("def schedule_nightly_job(job):\n    return job.run_at('02:00')\n")
    (root / "notes.txt").unlink()


def _start(root: Path, index_dir: Path, model: Path) -> subprocess.Popen:
    process = subprocess.Popen([sys.executable, "-c", REFRESH_SCRIPT, str(root), str(index_dir), str(model)],
                               stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    assert process.stdout.readline().strip() == "refreshing"
    return process


def _committed_vectors(directory: Path) -> int:
    store = IndexStore(directory, writable=False)
    try:
        with store.read():
            return store.vector_rows
    finally:
        store.close()


@pytest.mark.slow
def test_sigkill_at_random_moments_never_breaks_the_index(tmp_path, make_bert):
    model = make_bert(hidden=64, layers=2, pooling="mean")
    root = tmp_path / "repo"
    rng = random.Random(1234)

    # References: the clean builds of the original tree (A) and of the changed one (B), and a full run's length.
    shutil.copytree(FIXTURES, root)
    clean_a = tmp_path / "clean-a"
    with _index(root, clean_a, model) as index:
        index.refresh()
        answers_a = _answers(index)
    saved_a = tmp_path / "saved-a"
    saved_a_name = next(clean_a.iterdir()).name  # the index folder's name for this root
    shutil.copytree(clean_a / saved_a_name, saved_a)
    process = _start(root, tmp_path / "timing", model)
    started = time.perf_counter()  # from the start of the refresh itself, as the kills below are timed
    assert process.wait(120) == 0
    full_run = time.perf_counter() - started
    _apply_branch(root)
    with _index(root, tmp_path / "clean-b", model) as index:
        embedded_b = index.refresh().chunks_embedded
        answers_b = _answers(index)
    assert answers_a != answers_b  # the change is visible in the answers

    outcomes = {"killed": 0, "finished first": 0}
    for trial in range(TRIALS):
        incremental = trial % 2 == 1
        shutil.rmtree(root)
        shutil.copytree(FIXTURES, root)
        index_dir = tmp_path / f"trial-{trial}"
        if incremental:  # the built index of A under this trial's folder, then the change to B
            shutil.copytree(saved_a, index_dir / saved_a_name)
            with _index(root, index_dir, model) as index:
                assert index.refresh().chunks_embedded == 0  # fresh stats, same content
        _apply_branch(root)
        delay = rng.uniform(0, 0.85 * full_run)  # a run varies in length: most kills must land inside it
        process = _start(root, index_dir, model)
        time.sleep(delay)
        process.send_signal(signal.SIGKILL)
        process.wait(30)
        outcomes["killed" if process.returncode == -signal.SIGKILL else "finished first"] += 1
        context = f"trial {trial} ({'incremental' if incremental else 'first build'}), killed after {delay:.2f} s"

        # What the kill left opens and passes SQLite's integrity check; an incremental trial still answers,
        # with the old index or the new one, never a mix.
        committed = 0
        with _index(root, index_dir, model) as index:
            if (index.directory / "index.sqlite").exists():
                index.check()
                committed = _committed_vectors(index.directory)
                if incremental:
                    assert _answers(index) in (answers_a, answers_b), context

        # The next refresh completes, reuses every committed vector and answers as the clean rebuild does.
        with _index(root, index_dir, model) as index:
            summary = index.refresh()
            index.check()
            assert _answers(index) == answers_b, context
        if not incremental:
            assert summary.chunks_embedded == embedded_b - committed, context
    assert outcomes["killed"] >= TRIALS // 2, outcomes
