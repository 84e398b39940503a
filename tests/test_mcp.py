"""`vecsift mcp` driven by the MCP SDK's own client over stdio, in a subprocess, as an agent would."""

from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path

import anyio
import pytest

pytest.importorskip("mcp")  # part of the test extra; `pip install 'vecsift[mcp]'` outside it

from mcp import ClientSession, StdioServerParameters, stdio_client

from vecsift.mcp_server import confine, fit

FIXTURES = Path(__file__).parent / "fixtures" / "polyglot"
TOOLS = {"search_code", "find_similar", "find_duplicates", "index_status", "reindex"}


@pytest.fixture
def repo(tmp_path) -> Path:
    root = tmp_path / "repo"
    shutil.copytree(FIXTURES, root)
    return root


def session_with(repo: Path, tmp_path: Path, *extra: str):
    """Run ``steps(session)`` against a fresh `vecsift mcp` server process; returns what it returns."""
    params = StdioServerParameters(
        command=sys.executable,
        args=["-m", "vecsift", "mcp", str(repo), "--index-dir", str(tmp_path / "indexes"), "--precision", "fp32",
              *extra],
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
    )

    def run(steps):
        async def main():
            with open(tmp_path / "server.log", "w") as errlog:
                async with stdio_client(params, errlog=errlog) as (read, write), ClientSession(read, write) as session:
                    await session.initialize()
                    return await steps(session)

        return anyio.run(main)

    return run


async def call(session, tool: str, **arguments):
    result = await session.call_tool(tool, arguments)
    text = result.content[0].text if result.content else ""
    return result.is_error, (text if result.is_error else json.loads(text))


def test_tools_and_their_schemas(repo, tmp_path):
    async def steps(session):
        return (await session.list_tools()).tools

    tools = {t.name: t for t in session_with(repo, tmp_path)(steps)}
    assert set(tools) == TOOLS
    search = tools["search_code"].input_schema
    assert search["required"] == ["query"]
    assert search["properties"]["top_k"]["maximum"] == 50 and search["properties"]["top_k"]["default"] == 10
    assert set(search["properties"]["mode"]["enum"]) == {"hybrid", "semantic", "keyword"}
    assert search["properties"]["files"]["type"] == "boolean" and search["properties"]["files"]["default"] is False
    assert tools["find_similar"].input_schema["required"] == ["path", "line"]
    assert all(t.description and len(t.description) > 30 for t in tools.values())


def test_search_similar_duplicates_status_and_an_edit_between_calls(repo, tmp_path):
    shutil.copy(repo / "session.py", repo / "session_copy.py")

    async def steps(session):
        out = {"search": await call(session, "search_code", query="least recently used cache", top_k=3)}
        out["files"] = await call(session, "search_code", query="function", top_k=6, files=True)
        out["similar"] = await call(session, "find_similar", path="session.py", line=13, top_k=2)
        out["duplicates"] = await call(session, "find_duplicates", threshold=0.9)
        out["status"] = await call(session, "index_status")
        (repo / "ledger.py").write_text("def reconcile_ledger_entries(entries):\n    return sorted(entries)\n")
        out["after edit"] = await call(session, "search_code", query="reconcile ledger entries", top_k=1)
        out["reindex"] = await call(session, "reindex")
        return out

    out = session_with(repo, tmp_path)(steps)
    error, search = out["search"]
    assert not error and search["results"][0]["path"] == "cache.rs" and search["truncated"] is False
    assert set(search["results"][0]) == {"path", "start_line", "end_line", "score", "kind", "name", "text"}
    error, files = out["files"]
    assert not error and len({r["path"] for r in files["results"]}) == len(files["results"]) == 6
    error, similar = out["similar"]
    assert not error and similar["results"][0]["path"] == "session_copy.py"
    error, duplicates = out["duplicates"]
    paths = {frozenset((p["a"]["path"], p["b"]["path"])) for p in duplicates["pairs"]}
    assert not error and frozenset({"session.py", "session_copy.py"}) in paths
    assert all(p["similarity"] >= 0.9 for p in duplicates["pairs"])
    error, status = out["status"]
    assert not error and status["files"] == len(list(FIXTURES.iterdir())) + 1 and status["stale_files"] == 0
    error, after = out["after edit"]
    assert not error and after["results"][0]["path"] == "ledger.py"
    error, reindex = out["reindex"]
    assert not error and reindex["files_added"] == 0 and reindex["chunks_embedded"] == 0


def test_paths_outside_the_root_are_refused_and_the_server_keeps_working(repo, tmp_path):
    (tmp_path / "secret.py").write_text("API_KEY = 'do not read'\n")
    (repo / "escape.py").symlink_to(tmp_path / "secret.py")

    async def steps(session):
        attempts = [await call(session, "find_similar", path=p, line=1)
                    for p in ("../secret.py", str(tmp_path / "secret.py"), "escape.py", "/etc/passwd")]
        bad_type = await call(session, "search_code", query=["not", "a", "string"])
        bad_value = await call(session, "search_code", query="cache", top_k=500)
        empty = await call(session, "search_code", query="   ")
        unknown_line = await call(session, "find_similar", path="session.py", line=999)
        still_working = await call(session, "search_code", query="deposit money", top_k=1)
        return attempts, bad_type, bad_value, empty, unknown_line, still_working

    attempts, bad_type, bad_value, empty, unknown_line, still_working = session_with(repo, tmp_path)(steps)
    for error, message in attempts:
        assert error and "outside the searched root" in message
        assert "do not read" not in message
    assert bad_type[0] and "query" in bad_type[1]
    assert bad_value[0] and "top_k" in bad_value[1]
    assert empty[0] and "query is empty" in empty[1]
    assert unknown_line[0] and "no indexed chunk holds session.py:999" in unknown_line[1]
    assert not still_working[0] and still_working[1]["results"][0]["path"] == "Account.java"


def test_answers_fit_the_character_budget(repo, tmp_path):
    async def steps(session):
        return await call(session, "search_code", query="function", top_k=20)

    error, answer = session_with(repo, tmp_path, "--max-chars", "1000")(steps)
    assert not error and len(answer["results"]) == 20  # texts shortened, results kept
    assert answer["truncated"] is True and "shortened to fit 1000 characters" in answer["note"]
    assert all(len(r["text"]) <= 200 for r in answer["results"])


def test_confine_and_fit_units(tmp_path):
    root = tmp_path.resolve()
    (root / "pkg").mkdir()
    assert confine(root, "pkg/../pkg/a.py") == "pkg/a.py"
    assert confine(root, str(root / "pkg" / "a.py")) == "pkg/a.py"
    for bad in ("../x", "/etc", "", "a\0b"):
        with pytest.raises(Exception, match="outside the searched root|non-empty file path"):
            confine(root, bad)
    items = [{"text": "line\n" * 100}, {"text": "short"}]
    fitted, shortened = fit(items, 300)
    assert shortened and fitted[1]["text"] == "short" and fitted[0]["text"].endswith("more lines)")
    assert fit(items, 10_000) == (items, False)
