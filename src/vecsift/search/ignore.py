"""Ignore rules as git applies them: nested ``.gitignore`` files, negations, ``.git/info/exclude``.

Patterns are matched by ``pathspec``'s ``GitIgnoreSpec`` (git's own wildmatch rules);
this module only decides which files apply where and in which order:

- ``.git/info/exclude`` of the repository is the weakest rule set;
- then each directory's ``.gitignore``, ``.ignore`` and ``.vecsiftignore`` (in that order),
  from the repository's top down to the file's own directory: deeper rules win;
- within a rule set the last matching pattern wins, and ``!pattern`` re-includes.

A directory that is ignored is not entered, so nothing below it can be re-included
(as in git). Rule files above the walked root, up to the repository's top, apply too,
unless they ignore the root itself (or a folder on the way to it): a folder named
explicitly is searched, with only its own rule files.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pathspec

IGNORE_FILES = (".gitignore", ".ignore", ".vecsiftignore")


@dataclass(frozen=True)
class _RuleSet:
    base: str  # directory the patterns are relative to, '/'-separated, relative to the repository top ('' = top)
    spec: pathspec.GitIgnoreSpec


def _read_rules(path: Path) -> pathspec.GitIgnoreSpec | None:
    try:
        lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return None
    return pathspec.GitIgnoreSpec.from_lines(lines) if any(line.strip() for line in lines) else None


def repository_top(root: Path) -> Path:
    """The top of the git work tree holding ``root`` (``root`` itself outside git)."""
    for candidate in (root, *root.parents):
        if (candidate / ".git").exists():
            return candidate
    return root


class IgnoreRules:
    """The rule sets in force for one directory; :meth:`descend` adds a subdirectory's own files."""

    def __init__(self, top: Path, rule_sets: tuple[_RuleSet, ...] = ()) -> None:
        self.top = top
        self._rule_sets = rule_sets

    @classmethod
    def for_root(cls, root: Path) -> IgnoreRules:
        """The rules in force at ``root`` before its own rule files: the exclude file, then the rule files of
        every folder from the repository's top down to ``root``'s parent (``root``'s own come with :meth:`descend`).
        """
        top = repository_top(root)
        rules = cls(top)
        exclude = _read_rules(top / ".git" / "info" / "exclude")
        if exclude is not None:
            rules = cls(top, (_RuleSet("", exclude),))
        if root != top:
            for directory in [top, *reversed([p for p in root.parents if top in p.parents])]:
                rules = rules.descend(directory)
                child = root if directory == root.parent else root.parents[len(root.relative_to(directory).parts) - 2]
                if rules.ignored(child, is_dir=True):
                    # The folder asked for is itself ignored by the repository around it (a venv, a
                    # build folder): searching it was asked for explicitly, so it stands on its own.
                    return cls(root)
        return rules

    def descend(self, directory: Path) -> IgnoreRules:
        """The rules inside ``directory``: these plus its own rule files (a new object; this one is unchanged)."""
        base = directory.relative_to(self.top).as_posix()
        added = []
        for name in IGNORE_FILES:
            spec = _read_rules(directory / name)
            if spec is not None:
                added.append(_RuleSet("" if base == "." else base, spec))
        return IgnoreRules(self.top, self._rule_sets + tuple(added)) if added else self

    def ignored(self, path: Path, is_dir: bool) -> bool:
        """Whether git would ignore ``path`` (an absolute path below the top)."""
        relative = path.relative_to(self.top).as_posix()
        verdict: bool | None = None
        for rule_set in self._rule_sets:
            if rule_set.base:
                if not relative.startswith(rule_set.base + "/"):
                    continue
                local = relative[len(rule_set.base) + 1:]
            else:
                local = relative
            result = rule_set.spec.check_file(local + "/" if is_dir else local)
            if result.include is not None:
                verdict = result.include
        return bool(verdict)
