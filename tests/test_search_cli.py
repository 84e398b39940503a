"""`vecsift search`, `index` and `status` as a user runs them: outputs, summaries, errors without tracebacks."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from vecsift.cli.main import main

FIXTURES = Path(__file__).parent / "fixtures" / "polyglot"
RESULT_KEYS = {"path", "start_line", "end_line", "score", "kind", "name", "scope", "language"}


@pytest.fixture
def repo(tmp_path) -> Path:
    root = tmp_path / "repo"
    shutil.copytree(FIXTURES, root)
    return root


@pytest.fixture
def index_args(tmp_path) -> list[str]:
    return ["--index-dir", str(tmp_path / "indexes"), "--precision", "fp32"]


def run_cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "NO_COLOR": ""}
    return subprocess.run([sys.executable, "-m", "vecsift", *args], capture_output=True, text=True, cwd=cwd,
                          env=env, timeout=300)


def test_search_json_end_to_end_in_a_fresh_process(repo, index_args):
    done = run_cli("search", "least recently used cache", str(repo), "--json", *index_args)
    assert done.returncode == 0, done.stderr
    rows = [json.loads(line) for line in done.stdout.splitlines()]
    assert rows[0]["path"] == "cache.rs" and len(rows) == 10
    assert set(rows[0]) == RESULT_KEYS
    assert "Traceback" not in done.stderr


def test_search_builds_then_refreshes_and_reports_it(repo, index_args, capsys):
    assert main(["search", "cache", str(repo), "--json", *index_args]) == 0
    assert "index refreshed" in capsys.readouterr().err  # first use builds
    assert main(["search", "cache", str(repo), "--json", *index_args]) == 0
    assert "index refreshed" not in capsys.readouterr().err  # nothing changed: nothing to say
    (repo / "added.py").write_text("def reconcile_ledger(entries):\n    return entries\n")
    assert main(["search", "reconcile ledger entries", str(repo), "--json", "-k", "1", *index_args]) == 0
    captured = capsys.readouterr()
    assert "1 files added" in captured.err and json.loads(captured.out)["path"] == "added.py"


def test_content_files_and_human_output(repo, index_args, capsys):
    assert main(["search", "Session request", str(repo), "--json", "--content", "-k", "1", *index_args]) == 0
    row = json.loads(capsys.readouterr().out)
    assert row["text"].splitlines()[0].strip().startswith("def request") and set(row) == RESULT_KEYS | {"text"}

    assert main(["search", "function", str(repo), "--files", "-k", "8", *index_args]) == 0
    paths = capsys.readouterr().out.splitlines()
    assert len(paths) == len(set(paths)) == 8  # 8 files, however many chunks each has among the best

    assert main(["search", "deposit money", str(repo), "-k", "2", *index_args]) == 0
    out = capsys.readouterr().out
    assert out.startswith("Account.java:10-13") and "│" in out and "\x1b[" not in out  # no colours off a TTY
    assert main(["search", "deposit money", str(repo), "-k", "1", "--color", "always", *index_args]) == 0
    assert "\x1b[1;31mdeposit\x1b[0m" in capsys.readouterr().out


def test_index_and_status_json(repo, index_args, capsys):
    assert main(["index", str(repo), "--json", *index_args]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert set(summary) == {"files_added", "files_changed", "files_removed", "chunks_embedded", "chunks_reused",
                            "seconds"}
    assert summary["files_added"] == len(list(FIXTURES.iterdir())) and summary["chunks_embedded"] > 50
    (repo / "session.py").write_text((repo / "session.py").read_text() + "\n\ndef extra():\n    return 1\n")
    assert main(["status", str(repo), "--json", *index_args]) == 0
    status = json.loads(capsys.readouterr().out)
    assert set(status) == {"root", "index_dir", "model", "files", "chunks", "bytes", "last_refresh", "stale_files"}
    assert (status["root"], status["files"], status["stale_files"]) == (str(repo), summary["files_added"], 1)
    assert status["bytes"] > 0 and status["chunks"] > 50
    assert main(["index", str(repo), "--json", *index_args]) == 0
    again = json.loads(capsys.readouterr().out)
    assert (again["files_changed"], again["chunks_embedded"]) == (1, 1)


def test_index_human_summary_and_verbose_skips(repo, index_args, capsys):
    (repo / "blob.dat").write_bytes(b"\0\0\0")
    assert main(["index", str(repo), "-v", *index_args]) == 0
    err = capsys.readouterr().err
    assert "skipped blob.dat: binary (NUL byte)" in err and "chunks embedded" in err and "1 skipped" in err


def test_repo_local_index(repo, capsys):
    assert main(["index", str(repo), "--repo-local", "--precision", "fp32"]) == 0
    assert (repo / ".vecsift" / "index.sqlite").exists()
    capsys.readouterr()
    assert main(["index", str(repo), "--repo-local", "--precision", "fp32", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["files_added"] == 0  # the index folder itself is never indexed


def test_index_dir_from_the_environment(repo, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("VECSIFT_INDEX_DIR", str(tmp_path / "from-env"))
    assert main(["status", str(repo), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["index_dir"].startswith(str(tmp_path / "from-env"))


@pytest.mark.parametrize(("arguments", "message"), [
    (["search", "x", "{missing}"], "does not exist"),
    (["search", "x", "{file}"], "is a file"),
    (["search", "   ", "{repo}"], "the query is empty"),
    (["search", "x", "{repo}", "--lang", "klingon"], "unknown language 'klingon'"),
    (["search", "x", "{repo}", "--content"], "--content goes with --json"),
    (["status", "{missing}"], "does not exist"),
])
def test_bad_input_is_one_clear_line(repo, tmp_path, index_args, capsys, arguments, message):
    (tmp_path / "file.py").write_text("x")
    values = {"missing": str(tmp_path / "missing"), "file": str(tmp_path / "file.py"), "repo": str(repo)}
    assert main([a.format(**values) for a in arguments] + index_args) == 1
    err = capsys.readouterr().err
    assert message in err and err.startswith("vecsift: error:") and "Traceback" not in err


@pytest.mark.parametrize("top_k", ["0", "-2", "ten"])
def test_bad_top_k_is_refused_by_the_parser(repo, top_k, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["search", "x", str(repo), "--top-k", top_k])
    assert exit_info.value.code == 2
    assert "--top-k" in capsys.readouterr().err


def test_an_empty_repository_says_so(tmp_path, index_args, capsys):
    (tmp_path / "empty").mkdir()
    assert main(["search", "anything", str(tmp_path / "empty"), *index_args]) == 1
    assert "no indexable files under" in capsys.readouterr().err


def test_a_damaged_index_names_the_fix_and_rebuild_repairs_it(repo, index_args, capsys):
    assert main(["index", str(repo), *index_args]) == 0
    database = next(Path(index_args[1]).iterdir()) / "index.sqlite"
    for suffix in ("-wal", "-shm"):
        Path(str(database) + suffix).unlink(missing_ok=True)
    database.write_bytes(b"this is not a database" * 100)
    capsys.readouterr()
    done = run_cli("search", "cache", str(repo), *index_args)
    assert done.returncode == 1 and "vecsift index --rebuild" in done.stderr and "Traceback" not in done.stderr
    assert main(["index", str(repo), "--rebuild", *index_args]) == 0
    assert main(["search", "least recently used cache", str(repo), "--json", "-k", "1", *index_args]) == 0
    assert json.loads(capsys.readouterr().out)["path"] == "cache.rs"


def test_a_second_writer_with_no_wait_fails_clearly(repo, index_args, capsys):
    from vecsift.search.location import index_dir_for
    from vecsift.search.lock import WriterLock

    directory = index_dir_for(repo.resolve(), index_args[1])
    directory.mkdir(parents=True)
    with WriterLock(directory):
        assert main(["index", str(repo), "--no-wait", *index_args]) == 1
    assert "is writing the index" in capsys.readouterr().err


def test_mcp_without_the_sdk_names_the_extra(repo, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "pydantic", None)  # as if the mcp extra (which brings pydantic) were absent
    monkeypatch.delitem(sys.modules, "vecsift.mcp_server", raising=False)
    assert main(["mcp", str(repo)]) == 1
    err = capsys.readouterr().err
    assert "pip install 'vecsift[mcp]'" in err and "Traceback" not in err
