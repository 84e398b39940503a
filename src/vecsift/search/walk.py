"""The walk: which files under a root are indexed, found with ``stat`` alone.

Content checks (binary, minified) need the bytes, so they happen where files are
read (:func:`read_source`); the walk itself only stats, which keeps the freshness
check of an up-to-date index fast. Symbolic links are never followed (a link can
leave the root or form a loop). A file or folder that vanishes or cannot be read
mid-walk is reported through ``on_skip`` and the walk goes on.
"""

from __future__ import annotations

import fnmatch
import os
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from vecsift.errors import UsageError, positive_int
from vecsift.search.ignore import IgnoreRules
from vecsift.search.languages import language_of

DEFAULT_MAX_FILE_SIZE = 1 << 20
MAX_LINE_CHARS = 4000  # a longer line marks a minified or generated file
SNIFF_BYTES = 8192
INDEX_DIR_NAME = ".vecsift"  # a repository-local index, never indexed itself
VCS_DIRS = frozenset({".git", ".hg", ".svn", ".bzr", "_darcs", ".jj"})
DEPENDENCY_AND_BUILD_DIRS = frozenset({
    "node_modules", "bower_components", "vendor", "target", "dist", "build", "out", "_build", ".venv", "venv",
    "__pycache__", ".tox", ".nox", ".eggs", ".mypy_cache", ".pytest_cache", ".ruff_cache", ".gradle",
    "site-packages", ".next", ".nuxt", ".terraform", "Pods", "DerivedData", "coverage", ".cache",
})
LOCK_AND_GENERATED = (
    "*.lock", "package-lock.json", "npm-shrinkwrap.json", "pnpm-lock.yaml", "go.sum", "*.min.js", "*.min.css",
    "*.map", "*_pb2.py", "*_pb2_grpc.py", "*.pb.go", "*.generated.*", "*.g.dart", "*.pyc", "*.so", "*.dll",
    "*.dylib", "*.o", "*.a", "*.class", "*.jar", "*.exe", "*.wasm", "*.png", "*.jpg", "*.jpeg", "*.gif", "*.ico",
    "*.pdf", "*.zip", "*.gz", "*.tar", "*.bz2", "*.xz", "*.zst", "*.7z", "*.whl", "*.npy", "*.npz", "*.bin",
    "*.safetensors", "*.sqlite", "*.db", "*.woff", "*.woff2", "*.ttf", "*.otf", "*.mp3", "*.mp4", "*.svg",
)

_SKIPPED_NAME = re.compile("|".join(fnmatch.translate(p) for p in LOCK_AND_GENERATED))  # one match per file


@dataclass(frozen=True)
class WalkOptions:
    """What the walk includes; the defaults are what ``vecsift search`` uses."""

    languages: frozenset[str] | None = None  # None: every language
    globs: tuple[str, ...] = ()  # relative-path globs; a file must match one ('!glob' excludes)
    hidden: bool = False  # include dot files and folders
    ignore_files: bool = True  # honour .gitignore, .ignore, .vecsiftignore, .git/info/exclude
    max_file_size: int = DEFAULT_MAX_FILE_SIZE
    skip_defaults: bool = True  # dependency/build folders, lock, minified and binary-by-name files

    def __post_init__(self) -> None:
        positive_int("max_file_size", self.max_file_size)

    def key(self) -> str:
        """A stable description, stored with an index: a different walk is a different index content."""
        return repr((sorted(self.languages or ()), self.globs, self.hidden, self.ignore_files, self.max_file_size,
                     self.skip_defaults))


@dataclass(frozen=True)
class WalkedFile:
    """A file the walk found: its path relative to the root and what ``stat`` said."""

    path: str  # '/'-separated, relative to the root
    absolute: Path
    size: int
    mtime_ns: int


@dataclass
class Skipped:
    """Files and folders passed over, with the reason (shown with --verbose, counted in summaries)."""

    entries: list[tuple[str, str]] = field(default_factory=list)

    def add(self, path: str, reason: str) -> None:
        self.entries.append((path, reason))


def matches_globs(relative: str, globs: tuple[str, ...]) -> bool:
    includes = [g for g in globs if not g.startswith("!")]
    excludes = [g[1:] for g in globs if g.startswith("!")]
    name = relative.rsplit("/", 1)[-1]

    def hit(pattern: str) -> bool:
        return fnmatch.fnmatchcase(relative, pattern) or ("/" not in pattern and fnmatch.fnmatchcase(name, pattern))

    if any(hit(g) for g in excludes):
        return False
    return not includes or any(hit(g) for g in includes)


def check_root(root: str | os.PathLike[str]) -> Path:
    """The root as an absolute real path; a missing root, a file or an unreadable folder is a UsageError."""
    path = Path(root).expanduser()
    if not path.exists():
        raise UsageError(f"path {path} does not exist")
    if not path.is_dir():
        raise UsageError(f"path {path} is a file; give the folder to search")
    if not os.access(path, os.R_OK | os.X_OK):
        raise UsageError(f"folder {path} cannot be read (permission denied)")
    return path.resolve()


def walk(root: Path, options: WalkOptions, skipped: Skipped | None = None,
         on_skip: Callable[[str, str], None] | None = None) -> Iterator[WalkedFile]:
    """Indexable files under ``root`` (a :func:`check_root` path), in a stable order, by ``stat`` alone."""

    def skip(relative: str, reason: str) -> None:
        if skipped is not None:
            skipped.add(relative, reason)
        if on_skip is not None:
            on_skip(relative, reason)

    rules = IgnoreRules.for_root(root) if options.ignore_files else None
    yield from _walk_dir(root, root, rules, options, skip)


def _walk_dir(root: Path, directory: Path, rules: IgnoreRules | None, options: WalkOptions,
              skip: Callable[[str, str], None]) -> Iterator[WalkedFile]:
    if rules is not None:
        rules = rules.descend(directory)
    try:
        with os.scandir(directory) as scan:
            entries = sorted(scan, key=lambda e: e.name)
    except OSError as err:
        skip(directory.relative_to(root).as_posix() + "/", f"cannot be read ({err.strerror or err})")
        return
    for entry in entries:
        path = Path(entry.path)
        relative = path.relative_to(root).as_posix()
        try:
            if entry.is_symlink():
                skip(relative, "symbolic link (not followed)")
                continue
            is_dir = entry.is_dir(follow_symlinks=False)
            if entry.name in VCS_DIRS or entry.name == INDEX_DIR_NAME:
                continue
            if not options.hidden and entry.name.startswith("."):
                continue
            if rules is not None and rules.ignored(path, is_dir):
                continue
            if is_dir:
                if options.skip_defaults and entry.name in DEPENDENCY_AND_BUILD_DIRS:
                    skip(relative + "/", "dependency, cache or build folder")
                    continue
                yield from _walk_dir(root, path, rules, options, skip)
                continue
            if not entry.is_file(follow_symlinks=False):
                continue  # sockets, fifos, devices
            if options.skip_defaults and _SKIPPED_NAME.match(entry.name):
                pattern = next(p for p in LOCK_AND_GENERATED if fnmatch.fnmatchcase(entry.name, p))
                skip(relative, f"lock, generated or binary file ({pattern})")
                continue
            if options.languages is not None and language_of(relative).name not in options.languages:
                continue
            if options.globs and not matches_globs(relative, options.globs):
                continue
            stat = entry.stat(follow_symlinks=False)
        except OSError as err:  # vanished or unreadable between listing and stat
            skip(relative, f"cannot be read ({err.strerror or err})")
            continue
        if stat.st_size > options.max_file_size:
            skip(relative, f"larger than {options.max_file_size} bytes")
            continue
        yield WalkedFile(relative, path, stat.st_size, stat.st_mtime_ns)


def read_source(file: WalkedFile) -> tuple[bytes, str | None, str | None]:
    """(bytes, text, reason): the text of an indexable file, or None and why it is not indexed."""
    with file.absolute.open("rb") as handle:
        data = handle.read()
    if b"\0" in data[:SNIFF_BYTES]:
        return data, None, "binary (NUL byte)"
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as err:
        line = data[: err.start].count(b"\n") + 1
        return data, None, f"not valid UTF-8 (line {line})"
    if text.startswith("\ufeff"):
        text = text[1:]
    longest = max((len(line) for line in text.split("\n")), default=0)
    if longest > MAX_LINE_CHARS:
        return data, None, f"minified or generated (a line of {longest} characters)"
    return data, text, None
