"""Chunking: golden line ranges per language, full coverage, long definitions split, fallbacks."""

from __future__ import annotations

import sysconfig
from itertools import pairwise
from pathlib import Path

import pytest

from vecsift.search.chunk import Chunk, chunk_text, embedding_text

FIXTURES = Path(__file__).parent / "fixtures" / "polyglot"

# (start_line, end_line, kind, scope) of every chunk, in order: reviewed by hand once, then frozen.
GOLDEN = {
    "Account.java": [
        (1, 1, "module", ""), (3, 4, "class", "Account"), (6, 8, "method", "Account.Account"),
        (10, 13, "method", "Account.deposit"),
    ],
    "GUIDE.md": [(1, 3, "section", "Guide"), (5, 12, "section", "Guide > Install"), (14, 16, "section", "Guide > Use")],
    "Greeter.kt": [
        (1, 1, "module", ""), (3, 3, "class", "Greeter"), (4, 7, "method", "Greeter.greet"),
        (9, 10, "function", "shout"),
    ],
    "Logger.cs": [
        (1, 1, "module", ""), (3, 4, "namespace", "App"), (5, 6, "class", "App.Logger"),
        (7, 12, "method", "App.Logger.Info"),
    ],
    "Parser.scala": [
        (1, 1, "module", ""), (3, 3, "object", "Parser"), (4, 6, "method", "Parser.parseInt"),
        (8, 8, "trait", "Tokenizer"), (9, 10, "method", "Tokenizer.tokens"),
    ],
    "Shapes.hs": [
        (1, 1, "module", ""), (3, 3, "type", "Shape"), (5, 7, "function", "area"), (9, 11, "function", "perimeter"),
    ],
    "Stack.swift": [(1, 2, "struct", "Stack"), (4, 7, "method", "Stack.push"), (9, 11, "function", "makeStack")],
    "button.tsx": [(1, 1, "module", ""), (3, 3, "type", "Props"), (5, 7, "function", "Button")],
    "cache.rs": [
        (1, 1, "module", ""), (3, 6, "struct", "Lru"), (8, 8, "impl", "Lru"), (9, 11, "method", "Lru.new"),
        (13, 16, "method", "Lru.get"), (18, 18, "trait", "Evict"), (19, 20, "method", "Evict.evict"),
    ],
    "cart.js": [
        (1, 1, "module", ""), (3, 6, "function", "addItem"), (8, 9, "function", "totalPrice"),
        (11, 11, "class", "Checkout"), (12, 14, "method", "Checkout.constructor"), (16, 19, "method", "Checkout.pay"),
    ],
    "config.lua": [
        (1, 1, "module", ""), (3, 6, "function", "M.load"), (8, 10, "function", "trim"), (12, 12, "module", ""),
    ],
    "deploy.sh": [
        (1, 2, "module", ""), (4, 6, "function", "build"), (8, 11, "function", "deploy"), (13, 13, "module", ""),
    ],
    "list.c": [(1, 1, "module", ""), (3, 6, "struct", "node"), (8, 13, "function", "push")],
    "math.ex": [(1, 2, "module", "Math"), (4, 6, "function", "Math.add"), (8, 9, "function", "Math.square")],
    "matrix.cpp": [
        (1, 1, "module", ""), (3, 3, "namespace", "linalg"), (5, 6, "class", "linalg.Matrix"),
        (7, 9, "method", "linalg.Matrix.at"), (11, 14, "class", "linalg.Matrix"), (16, 16, "namespace", "linalg"),
    ],
    "notes.txt": [(1, 2, "text", "")],
    "queue.rb": [
        (1, 1, "module", ""), (3, 3, "module", "Jobs"), (4, 4, "class", "Jobs.Queue"),
        (5, 7, "method", "Jobs.Queue.push"), (9, 13, "method", "Jobs.Queue.pop"),
    ],
    "router.php": [
        (1, 1, "module", ""), (3, 4, "class", "Router"), (5, 9, "method", "Router.dispatch"),
        (11, 14, "function", "redirect"),
    ],
    "server.go": [
        (1, 3, "module", ""), (5, 8, "struct", "Server"), (10, 12, "method", "Server.Health"),
        (14, 16, "function", "New"),
    ],
    "session.py": [
        (1, 4, "module", ""), (7, 10, "class", "Session"), (12, 18, "method", "Session.request"),
        (20, 22, "method", "Session._send"), (25, 26, "function", "backoff_delay"),
    ],
    "shapes.ts": [
        (1, 3, "interface", "Shape"), (5, 5, "type", "Point"), (7, 7, "class", "Circle"),
        (8, 8, "method", "Circle.constructor"), (10, 13, "method", "Circle.area"), (15, 15, "function", "unit"),
    ],
    "vec.zig": [
        (1, 1, "module", ""), (3, 5, "struct", "Vec2"), (7, 10, "method", "Vec2.dot"), (12, 14, "function", "zero"),
    ],
}


def _chunks(path: Path, max_chars: int = 700) -> list[Chunk]:
    return chunk_text(path.name, path.read_text(encoding="utf-8"), max_chars)


def _uncovered(text: str, chunks: list[Chunk]) -> list[int]:
    covered = {line for c in chunks for line in range(c.start_line, c.end_line + 1)}
    return [n for n, line in enumerate(text.split("\n"), start=1) if line.strip() and n not in covered]


@pytest.mark.parametrize("name", sorted(GOLDEN))
def test_golden_chunk_ranges(name):
    chunks = _chunks(FIXTURES / name)
    assert [(c.start_line, c.end_line, c.kind, c.scope) for c in chunks] == GOLDEN[name]


def test_every_fixture_language_is_golden():
    assert sorted(p.name for p in FIXTURES.iterdir()) == sorted(GOLDEN)
    languages = {name.rsplit(".", 1)[-1] for name in GOLDEN}
    assert {"py", "js", "ts", "tsx", "go", "rs", "java", "c", "cpp", "cs", "rb", "php", "kt", "swift", "scala",
            "lua", "sh", "ex", "hs", "zig", "md", "txt"} <= languages


def test_chunk_text_is_the_lines_it_names():
    path = FIXTURES / "session.py"
    lines = path.read_text().split("\n")
    for chunk in _chunks(path):
        assert chunk.text == "\n".join(lines[chunk.start_line - 1:chunk.end_line])
        assert chunk.path == "session.py" and chunk.language == "python"


def test_names_and_scopes():
    by_scope = {c.scope: c for c in _chunks(FIXTURES / "session.py")}
    assert by_scope["Session.request"].name == "request"
    assert by_scope["Session.request"].kind == "method"
    assert by_scope["backoff_delay"].kind == "function"
    assert by_scope["Session._send"].start_line == 20  # its decorator belongs to it


def test_comment_above_a_definition_belongs_to_it():
    go = {c.scope: c for c in _chunks(FIXTURES / "server.go")}
    assert go["Server"].text.startswith("// Server answers health checks.")


STDLIB = Path(sysconfig.get_paths()["stdlib"])


@pytest.mark.parametrize("name", ["argparse.py", "json/decoder.py", "asyncio/base_events.py", "textwrap.py",
                                  "collections/__init__.py", "email/message.py"])
def test_every_non_blank_line_is_in_a_chunk_on_real_code(name):
    text = (STDLIB / name).read_text(encoding="utf-8")
    chunks = chunk_text(name, text, 700)
    assert _uncovered(text, chunks) == []
    assert all(len(c.text) <= 700 or c.start_line == c.end_line for c in chunks)


def test_a_long_definition_is_split_into_overlapping_windows():
    body = "\n".join(f"    total += compute_value_{i}(argument_{i})" for i in range(120))
    text = f"def long_function():\n    total = 0\n{body}\n    return total\n"
    chunks = chunk_text("long.py", text, 600)
    assert len(chunks) > 3
    assert all(c.kind == "function" and c.scope == "long_function" for c in chunks)
    assert all(len(c.text) <= 600 for c in chunks)
    for before, after in pairwise(chunks):
        assert after.start_line <= before.end_line  # windows overlap: nothing falls between them
    assert chunks[0].start_line == 1 and chunks[-1].end_line == 123
    assert _uncovered(text, chunks) == []


def test_unparseable_code_still_covers_every_line():
    text = "def broken(:\n    return ]]]\nclass {\n\nx = (\n"
    chunks = chunk_text("broken.py", text, 700)
    assert _uncovered(text, chunks) == []


def test_markdown_headings_inside_code_fences_are_not_sections():
    chunks = _chunks(FIXTURES / "GUIDE.md")
    assert [c.name for c in chunks] == ["Guide", "Install", "Use"]


def test_unknown_extension_is_line_windows():
    text = "\n".join(f"line {i} of some configuration" for i in range(200))
    chunks = chunk_text("settings.conf", text, 500)
    assert {c.kind for c in chunks} == {"text"} and len(chunks) > 1
    assert _uncovered(text, chunks) == []


def test_empty_and_blank_files_have_no_chunks():
    assert chunk_text("empty.py", "", 700) == []
    assert chunk_text("blank.txt", "\n\n   \n", 700) == []


def test_embedding_text_has_a_header():
    chunk = next(c for c in _chunks(FIXTURES / "session.py") if c.scope == "Session.request")
    text = embedding_text(chunk)
    assert text.startswith("session.py\nmethod Session.request\n    def request")
    assert embedding_text(chunk, with_path=False).startswith("method Session.request\n")
