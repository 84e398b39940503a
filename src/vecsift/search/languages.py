"""Which language a file is in, and which syntax nodes of that language are definitions.

One table drives the walker (``--lang``), the chunker (tree-sitter grammar and the
node types that become chunks) and the results (the ``language`` field). A file
whose extension is not here is indexed as plain text in line windows.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import PurePath

from vecsift.errors import UsageError

# Kinds that hold other definitions: their members become chunks of their own, scoped by the container.
CONTAINER_KINDS = frozenset({"class", "struct", "interface", "trait", "impl", "module", "namespace", "enum",
                             "object", "protocol", "extension", "instance", "record"})


@dataclass(frozen=True)
class Language:
    """A language as vecsift indexes it."""

    name: str  # what --lang takes and results report
    extensions: tuple[str, ...]  # lower-case, with the dot
    grammar: str | None = None  # tree-sitter-language-pack name; None: no syntax tree (prose or line windows)
    definitions: dict[str, str] = field(default_factory=dict)  # syntax node type → chunk kind
    wrappers: frozenset[str] = frozenset()  # nodes wrapping a definition (decorators, export, template)
    filenames: tuple[str, ...] = ()  # exact file names (Makefile, Dockerfile)


_JS_DEFS = {
    "function_declaration": "function", "generator_function_declaration": "function",
    "class_declaration": "class", "abstract_class_declaration": "class", "method_definition": "method",
    "interface_declaration": "interface", "type_alias_declaration": "type", "enum_declaration": "enum",
    "internal_module": "namespace", "module": "namespace",
    # `const f = () => …`: kept only when the declarator's value is a function (see chunk.py).
    "lexical_declaration": "function", "variable_declaration": "function",
}
_C_DEFS = {"function_definition": "function", "struct_specifier": "struct", "enum_specifier": "enum",
           "union_specifier": "struct", "type_definition": "type"}

LANGUAGES: tuple[Language, ...] = (
    Language("python", (".py", ".pyi", ".pyw"), "python",
             {"function_definition": "function", "class_definition": "class"}, frozenset({"decorated_definition"})),
    Language("javascript", (".js", ".mjs", ".cjs", ".jsx"), "javascript", _JS_DEFS, frozenset({"export_statement"})),
    Language("typescript", (".ts", ".mts", ".cts"), "typescript", _JS_DEFS, frozenset({"export_statement"})),
    Language("tsx", (".tsx",), "tsx", _JS_DEFS, frozenset({"export_statement"})),
    Language("go", (".go",), "go", {"function_declaration": "function", "method_declaration": "method",
                                     "type_declaration": "type"}),
    Language("rust", (".rs",), "rust", {
        "function_item": "function", "function_signature_item": "function", "struct_item": "struct",
        "enum_item": "enum", "union_item": "struct", "trait_item": "trait", "impl_item": "impl",
        "mod_item": "module", "macro_definition": "macro", "type_item": "type"}),
    Language("java", (".java",), "java", {
        "class_declaration": "class", "interface_declaration": "interface", "enum_declaration": "enum",
        "record_declaration": "record", "annotation_type_declaration": "interface",
        "method_declaration": "method", "constructor_declaration": "method"}),
    Language("c", (".c", ".h"), "c", _C_DEFS),
    Language("cpp", (".cc", ".cpp", ".cxx", ".hpp", ".hh", ".hxx", ".c++", ".h++", ".ipp"), "cpp",
             {**_C_DEFS, "class_specifier": "class", "namespace_definition": "namespace"},
             frozenset({"template_declaration"})),
    Language("csharp", (".cs",), "csharp", {
        "class_declaration": "class", "struct_declaration": "struct", "interface_declaration": "interface",
        "enum_declaration": "enum", "record_declaration": "record", "method_declaration": "method",
        "constructor_declaration": "method", "property_declaration": "property",
        "namespace_declaration": "namespace"}),
    Language("ruby", (".rb", ".rake", ".gemspec"), "ruby", {
        "method": "method", "singleton_method": "method", "class": "class", "module": "module"},
        filenames=("Rakefile", "Gemfile")),
    Language("php", (".php",), "php", {
        "function_definition": "function", "method_declaration": "method", "class_declaration": "class",
        "interface_declaration": "interface", "trait_declaration": "trait", "enum_declaration": "enum"}),
    Language("kotlin", (".kt", ".kts"), "kotlin", {
        "function_declaration": "function", "class_declaration": "class", "object_declaration": "object"}),
    Language("swift", (".swift",), "swift", {
        "function_declaration": "function", "class_declaration": "class", "protocol_declaration": "protocol",
        "init_declaration": "method", "protocol_function_declaration": "function"}),
    Language("scala", (".scala", ".sc"), "scala", {
        "function_definition": "function", "function_declaration": "function", "class_definition": "class",
        "object_definition": "object", "trait_definition": "trait", "enum_definition": "enum"}),
    Language("lua", (".lua",), "lua", {"function_declaration": "function"}),
    Language("bash", (".sh", ".bash", ".zsh"), "bash", {"function_definition": "function"}),
    # Elixir definitions are calls (`def`, `defmodule`, …): recognised by their target in chunk.py.
    Language("elixir", (".ex", ".exs"), "elixir", {"call": "function"}),
    Language("haskell", (".hs",), "haskell", {
        "function": "function", "bind": "function", "signature": "function", "data_type": "type",
        "newtype": "type", "class": "class", "instance": "instance", "type_synomym": "type"}),
    # Zig: a `Decl` holding a function prototype or a `const X = struct {…}` (see chunk.py).
    Language("zig", (".zig",), "zig", {"Decl": "function", "TestDecl": "test"}),
    Language("markdown", (".md", ".markdown", ".mdx", ".rst", ".adoc")),
    Language("text", ()),  # every other text file: line windows
)

_BY_NAME = {language.name: language for language in LANGUAGES}
_BY_EXTENSION = {ext: language for language in LANGUAGES for ext in language.extensions}
_BY_FILENAME = {name: language for language in LANGUAGES for name in language.filenames}
_ALIASES = {"py": "python", "js": "javascript", "ts": "typescript", "rs": "rust", "cs": "csharp", "c#": "csharp",
            "c++": "cpp", "rb": "ruby", "kt": "kotlin", "sh": "bash", "shell": "bash", "ex": "elixir",
            "hs": "haskell", "md": "markdown", "txt": "text", "golang": "go", "jsx": "javascript"}
TEXT = _BY_NAME["text"]


def language_of(path: str | PurePath) -> Language:
    """The language of a file, by extension or exact name; plain text when unknown."""
    pure = PurePath(path)
    return _BY_FILENAME.get(pure.name) or _BY_EXTENSION.get(pure.suffix.lower(), TEXT)


def parse_languages(spec: str | list[str] | None) -> frozenset[str] | None:
    """``"py,go"`` → ``{"python", "go"}``; None means every language. An unknown name is a UsageError."""
    if spec is None:
        return None
    names = spec.split(",") if isinstance(spec, str) else list(spec)
    chosen: set[str] = set()
    for raw in names:
        name = raw.strip().lower()
        if not name:
            continue
        name = _ALIASES.get(name, name)
        if name not in _BY_NAME:
            raise UsageError(f"unknown language {raw.strip()!r}; known: {', '.join(sorted(_BY_NAME))}")
        chosen.add(name)
    if not chosen:
        raise UsageError("--lang names no language")
    return frozenset(chosen)
