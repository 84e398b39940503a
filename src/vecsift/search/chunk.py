"""Files → chunks: definitions found with tree-sitter, the code between them, prose by sections.

How a file is cut (every non-blank line ends up in at least one chunk):

1. Definitions (functions, methods, classes, impls, …) are found in the syntax tree;
   members of a container (a class's methods) are definitions of their own, scoped
   by the container (``Session.request``). Comments right above a definition belong to it.
2. Each line is owned by the innermost definition that covers it; maximal runs of
   lines with one owner become chunks. Lines no definition covers (imports,
   module-level statements) become ``module`` chunks; a container's own lines
   (its header, fields) become chunks of the container's kind.
3. A run with no word character in it (a closing brace) joins the run before it.
4. A chunk longer than the character budget (derived from the model's token limit)
   is split into overlapping line windows, never cut.

Files without a grammar: Markdown by heading sections, anything else by line windows.
A file tree-sitter cannot parse at all falls back to line windows.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator
from dataclasses import dataclass

from vecsift.search.languages import CONTAINER_KINDS, Language, language_of

CHUNKER_VERSION = 1  # bump when chunk boundaries change: indexes built by another version are rebuilt
WINDOW_OVERLAP_LINES = 3
# A run made of closing tokens only (`}`, `end`, `fi`, …) belongs to the definition above it.
_CLOSING_ONLY = re.compile(r"^[\W_]*(?:(?:end|fi|done|esac)\b[\W_]*)*$")
_IDENTIFIER_TYPES = ("identifier", "type_identifier", "simple_identifier", "constant", "name", "IDENTIFIER",
                     "field_identifier", "property_identifier", "word", "alias", "qualified_identifier",
                     "scoped_identifier", "dot_index_expression", "method_index_expression")
_ELIXIR_DEFINITIONS = {"def": "function", "defp": "function", "defmacro": "macro", "defmacrop": "macro",
                       "defmodule": "module", "defprotocol": "protocol", "defimpl": "impl",
                       "defguard": "function", "defdelegate": "function"}
_FUNCTION_VALUES = {"arrow_function", "function_expression", "function", "generator_function"}
_NAMESPACE_KINDS = frozenset({"module", "namespace"})  # their functions stay functions; a type's are methods
_SWIFT_KINDS = {"struct": "struct", "enum": "enum", "extension": "extension", "actor": "class", "class": "class"}
_MARKDOWN_HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$")
_FENCE = re.compile(r"^\s*(```|~~~)")


@dataclass(frozen=True)
class Chunk:
    """A piece of a file that is indexed, embedded and returned as a result on its own."""

    path: str  # relative to the indexed root, '/'-separated
    language: str
    start_line: int  # 1-based, inclusive
    end_line: int  # 1-based, inclusive
    kind: str  # function, method, class, …, module (code between definitions), section, text
    name: str  # the definition's own name ('' for module code and text windows)
    scope: str  # qualified name, e.g. 'Session.request' ('' outside any definition)
    text: str  # the source lines start_line..end_line


def embedding_text(chunk: Chunk, *, with_path: bool = True) -> str:
    """What the model reads for a chunk: a short header (path, kind and scope), then the code."""
    header = []
    if with_path:
        header.append(chunk.path)
    if chunk.scope:
        header.append(f"{chunk.kind} {chunk.scope}")
    return "\n".join([*header, chunk.text]) if header else chunk.text


@dataclass
class _Span:
    """A definition found in the tree (0-based rows, inclusive)."""

    start: int
    end: int
    kind: str
    name: str
    scope: str


_parsers = threading.local()


def _parser(grammar: str):
    cache = getattr(_parsers, "by_grammar", None)
    if cache is None:
        cache = _parsers.by_grammar = {}
    if grammar not in cache:
        from tree_sitter_language_pack import get_parser

        cache[grammar] = get_parser(grammar)
    return cache[grammar]


def _text(node) -> str:
    return node.text.decode("utf-8", "replace") if node is not None and node.text is not None else ""


def _name_of(node) -> str:
    """A definition's name: its ``name`` field, a C-style declarator chain, or its first identifier."""
    named = node.child_by_field_name("name")
    if named is not None:
        return _text(named)
    declarator = node.child_by_field_name("declarator")
    while declarator is not None:
        if declarator.type in _IDENTIFIER_TYPES or declarator.type.endswith("identifier"):
            return _text(declarator)
        inner = declarator.child_by_field_name("declarator")
        if inner is None:
            return next((_text(c) for c in declarator.named_children if c.type in _IDENTIFIER_TYPES), "")
        declarator = inner
    return next((_text(c) for c in node.named_children if c.type in _IDENTIFIER_TYPES), "")


def _definition(node, language: Language) -> tuple | None:
    """(kind, name, node whose members to look into[, owner]) if ``node`` is a definition, else None.

    ``owner`` qualifies a definition written outside its type (a Go method's receiver).
    """
    if node.type in language.wrappers:
        for child in node.named_children:
            found = _definition(child, language)
            if found is not None:
                return found
        return None
    kind = language.definitions.get(node.type)
    if kind is None:
        return None
    special = _SPECIAL.get((language.name, node.type)) or _SPECIAL.get(("*", node.type))
    if special is not None:
        return special(node, kind)
    return kind, _name_of(node), node


def _js_variable(node, kind: str):
    for declarator in node.named_children:
        value = declarator.child_by_field_name("value")
        if declarator.type == "variable_declarator" and value is not None and value.type in _FUNCTION_VALUES:
            return "function", _text(declarator.child_by_field_name("name")), node
    return None


def _c_tagged(node, kind: str):
    # `struct point p;` mentions a struct; only one with a body defines it.
    if node.child_by_field_name("body") is None:
        return None
    return kind, _name_of(node), node


def _go_type(node, kind: str):
    spec = next((c for c in node.named_children if c.type in ("type_spec", "type_alias")), None)
    if spec is None:
        return kind, "", node
    body = spec.child_by_field_name("type")
    shape = {"struct_type": "struct", "interface_type": "interface"}.get(body.type if body is not None else "", kind)
    return shape, _text(spec.child_by_field_name("name")), node


def _go_method(node, kind: str):
    receiver = node.child_by_field_name("receiver")
    receiver_type = re.sub(r"^\(\s*(\w+\s+)?\*?|\)$", "", _text(receiver)).strip() if receiver is not None else ""
    return kind, _name_of(node), node, receiver_type


def _rust_impl(node, kind: str):
    target = _text(node.child_by_field_name("type"))
    trait = node.child_by_field_name("trait")
    return kind, (f"{_text(trait)} for {target}" if trait is not None else target), node


def _swift_class(node, kind: str):
    keyword = node.child_by_field_name("declaration_kind")
    word = _text(keyword) if keyword is not None else (node.children[0].type if node.children else "class")
    return _SWIFT_KINDS.get(word, kind), _name_of(node), node


def _elixir_call(node, kind: str):
    target = node.child_by_field_name("target") or (node.named_children[0] if node.named_children else None)
    chosen = _ELIXIR_DEFINITIONS.get(_text(target)) if target is not None else None
    if chosen is None:
        return None
    arguments = next((c for c in node.named_children if c.type == "arguments"), None)
    first = arguments.named_children[0] if arguments is not None and arguments.named_children else None
    if first is not None and first.type in ("call", "binary_operator"):
        inner = first.child_by_field_name("target") or first.child_by_field_name("left")
        first = inner if inner is not None else first
    return chosen, _text(first), node


def _zig_decl(node, kind: str):
    for child in node.named_children:
        if child.type == "FnProto":
            return "function", next((_text(c) for c in child.named_children if c.type == "IDENTIFIER"), ""), node
        if child.type == "VarDecl" and re.search(r"=\s*(extern\s+|packed\s+)?(struct|enum|union|opaque)\b",
                                                 _text(child)):
            return "struct", next((_text(c) for c in child.named_children if c.type == "IDENTIFIER"), ""), node
    return None


def _zig_test(node, kind: str):
    label = next((_text(c).strip('"') for c in node.named_children if "STRING" in c.type), "")
    return kind, label, node


_SPECIAL = {
    ("*", "lexical_declaration"): _js_variable,
    ("*", "variable_declaration"): _js_variable,
    ("c", "struct_specifier"): _c_tagged, ("c", "enum_specifier"): _c_tagged, ("c", "union_specifier"): _c_tagged,
    ("cpp", "struct_specifier"): _c_tagged, ("cpp", "enum_specifier"): _c_tagged,
    ("cpp", "union_specifier"): _c_tagged, ("cpp", "class_specifier"): _c_tagged,
    ("go", "type_declaration"): _go_type,
    ("go", "method_declaration"): _go_method,
    ("rust", "impl_item"): _rust_impl,
    ("swift", "class_declaration"): _swift_class,
    ("elixir", "call"): _elixir_call,
    ("zig", "Decl"): _zig_decl,
    ("zig", "TestDecl"): _zig_test,
}


def _qualify(scope: str, name: str) -> str:
    return f"{scope}.{name}" if scope and name else scope or name


def _collect(node, language: Language, scope: str, out: list[_Span], in_type: bool = False) -> None:
    """Definitions below ``node`` in pre-order: a container before its members."""
    for child in node.named_children:
        found = _definition(child, language)
        if found is None:
            _collect(child, language, scope, out, in_type)
            continue
        kind, name, inner, *owner = found
        if kind == "function" and in_type:
            kind = "method"
        start = child.start_point[0]
        previous = child.prev_named_sibling
        while previous is not None and "comment" in previous.type and previous.end_point[0] >= start - 1:
            start = previous.start_point[0]
            previous = previous.prev_named_sibling
        end = child.end_point[0] - (1 if child.end_point[1] == 0 and child.end_point[0] > start else 0)
        qualified = _qualify(_qualify(scope, owner[0]) if owner else scope, name)
        out.append(_Span(start, end, kind, name, qualified))
        if kind in CONTAINER_KINDS:
            _collect(inner, language, qualified, out, kind not in _NAMESPACE_KINDS)


def _runs(lines: list[str], spans: list[_Span]) -> Iterator[tuple[int, int, _Span | None]]:
    """Maximal runs (first, last row) of non-blank lines owned by one span (None: no definition)."""
    owner: list[int] = [-1] * len(lines)
    for index, span in enumerate(spans):  # pre-order: members overwrite their container
        for row in range(max(span.start, 0), min(span.end, len(lines) - 1) + 1):
            owner[row] = index
    current, first, last = -2, -1, -1
    for row, line in enumerate(lines):
        if not line.strip():
            continue
        if owner[row] != current and first >= 0:
            yield first, last, spans[current] if current >= 0 else None
            first = -1
        if first < 0:
            first, current = row, owner[row]
        last = row
    if first >= 0:
        yield first, last, spans[current] if current >= 0 else None


def line_windows(first: int, last: int, lines: list[str], max_chars: int) -> Iterator[tuple[int, int]]:
    """Line windows of at most ``max_chars`` characters (at least one line), overlapping by a few lines."""
    start = first
    while True:
        size, end = 0, start
        while end <= last and (end == start or size + len(lines[end]) + 1 <= max_chars):
            size += len(lines[end]) + 1
            end += 1
        yield start, end - 1
        if end > last:
            return
        overlap = min(WINDOW_OVERLAP_LINES, (end - start) // 3)
        start = end - overlap


def _chunks_from_runs(path: str, language: str, lines: list[str], runs: list[tuple[int, int, _Span | None]],
                      max_chars: int, default_kind: str = "module") -> list[Chunk]:
    merged: list[list] = []
    for first, last, span in runs:
        if merged and (_CLOSING_ONLY.match(" ".join(lines[first:last + 1])) or merged[-1][2] is span
                       or (span is not None and merged[-1][2] is not None and _same(merged[-1][2], span))):
            merged[-1][1] = last  # a closing brace, or another piece of the same definition
            continue
        merged.append([first, last, span])
    chunks: list[Chunk] = []
    for first, last, span in merged:
        kind, name, scope = (span.kind, span.name, span.scope) if span is not None else (default_kind, "", "")
        for start, end in line_windows(first, last, lines, max_chars):
            text = "\n".join(line.rstrip("\r") for line in lines[start:end + 1])
            chunks.append(Chunk(path, language, start + 1, end + 1, kind, name, scope, text))
    return chunks


def _same(a: _Span, b: _Span) -> bool:
    """Consecutive spans that read as one definition (Haskell's equations and signature)."""
    return (a.kind, a.name, a.scope) == (b.kind, b.name, b.scope) and bool(a.name)


def _markdown_runs(lines: list[str]) -> list[tuple[int, int, _Span | None]]:
    headings: list[tuple[int, int, str]] = []  # (row, level, title) outside fenced code
    fenced = False
    for row, line in enumerate(lines):
        if _FENCE.match(line):
            fenced = not fenced
            continue
        match = None if fenced else _MARKDOWN_HEADING.match(line)
        if match:
            headings.append((row, len(match.group(1)), match.group(2)))
    spans: list[_Span] = []
    trail: list[tuple[int, str]] = []
    for index, (row, level, title) in enumerate(headings):
        end = headings[index + 1][0] - 1 if index + 1 < len(headings) else len(lines) - 1
        trail = [(lvl, t) for lvl, t in trail if lvl < level] + [(level, title)]
        spans.append(_Span(row, end, "section", title, " > ".join(t for _, t in trail)))
    return list(_runs(lines, spans))


def chunk_text(path: str, text: str, max_chars: int) -> list[Chunk]:
    """The chunks of one file, in line order (``path`` is relative and only used for the language and labels)."""
    language = language_of(path)
    lines = text.split("\n")
    if language.grammar is not None:
        try:
            tree = _parser(language.grammar).parse(text.encode("utf-8"))
        except Exception:  # a grammar that cannot parse this file: line windows, never a crash
            tree = None
        if tree is not None and tree.root_node.type != "ERROR":
            spans: list[_Span] = []
            _collect(tree.root_node, language, "", spans)
            return _chunks_from_runs(path, language.name, lines, list(_runs(lines, spans)), max_chars)
    if language.name == "markdown":
        return _chunks_from_runs(path, language.name, lines, _markdown_runs(lines), max_chars, "section")
    kind = "text" if language.grammar is None else "module"
    return _chunks_from_runs(path, language.name, lines, list(_runs(lines, [])), max_chars, kind)
