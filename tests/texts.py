"""A varied test corpus: code in several languages, prose, unicode, emoji, edge cases, long inputs."""

from __future__ import annotations

import random
import sysconfig
from pathlib import Path

SNIPPETS = [
    "def retry(fn, attempts=3):\n    for i in range(attempts):\n        try:\n            return fn()\n"
    "        except Exception:\n            time.sleep(2 ** i)\n",
    "fn main() {\n    let v: Vec<u32> = (0..10).map(|x| x * x).collect();\n    println!(\"{:?}\", v);\n}",
    "func handler(w http.ResponseWriter, r *http.Request) {\n\tfmt.Fprintf(w, \"hello %s\", r.URL.Path)\n}",
    "const debounce = (fn, ms) => { let t; return (...a) => { clearTimeout(t); "
    "t = setTimeout(() => fn(...a), ms); }; };",
    "SELECT u.id, COUNT(o.id) FROM users u LEFT JOIN orders o ON o.user_id = u.id "
    "GROUP BY u.id HAVING COUNT(o.id) > 3;",
    "#include <stdio.h>\nint main(void) { printf(\"%d\\n\", 42); return 0; }",
    "public class Stack<T> { private final Deque<T> items = new ArrayDeque<>(); "
    "public void push(T t) { items.push(t); } }",
    "retry with exponential backoff and jitter",
    "How do I parse a JSON file in Python?",
    "The quick brown fox jumps over the lazy dog.",
    "Ünïcödé façade naïve coöperate — “quotes” and ‘apostrophes’",
    "日本語のテキストと中文文本和한국어 텍스트",
    "emoji 🚀🔥✨ in a sentence 👍🏽 with ZWJ 👨‍👩‍👧‍👦",
    "مرحبا بالعالم — Привет, мир — Γειά σου Κόσμε",
    "",
    " ",
    "\n\t  \n",
    "a",
    "!!!???...,,,;;;",
    "x" * 3000,
    "word " * 1000,
    "CamelCaseIdentifierWithManyParts snake_case_identifier_with_parts kebab-case-too",
    "0x1F 0b1010 3.14159e-10 1_000_000",
]


def varied_texts(count: int = 220, seed: int = 0) -> list[str]:
    """``count`` texts: the snippets above plus chunks of real stdlib source, some far over 256 tokens."""
    rng = random.Random(seed)
    texts = list(SNIPPETS)
    sources = sorted(Path(sysconfig.get_paths()["stdlib"]).glob("*.py"))
    while len(texts) < count:
        lines = rng.choice(sources).read_text(encoding="utf-8", errors="replace").splitlines()
        start = rng.randrange(max(1, len(lines)))
        texts.append("\n".join(lines[start : start + rng.choice([1, 3, 10, 40, 200])]))
    return texts
