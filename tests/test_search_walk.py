"""The walk: git's ignore rules (checked against git itself), default skips, links, bad files."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from vecsift.errors import UsageError
from vecsift.search.walk import Skipped, WalkedFile, WalkOptions, check_root, read_source, walk

# Everything git would list, hidden files and build folders included, so only ignore rules decide.
AS_GIT = WalkOptions(hidden=True, skip_defaults=False)

TREE = {
    ".gitignore": "*.log\n!keep.log\nbuild/\n/root_only.txt\ndocs/*.md\n!docs/README.md\n# comment\n\\#hash.txt\n",
    "a.py": "", "app.log": "", "keep.log": "", "root_only.txt": "", "#hash.txt": "", "plain.txt": "",
    "build/out.py": "", "docs/guide.md": "", "docs/README.md": "", "docs/api/x.md": "", "secret.txt": "",
    "sub/.gitignore": "*.tmp\n!important.tmp\nlocal/\n/anchored.txt\n",
    "sub/root_only.txt": "", "sub/x.tmp": "", "sub/important.tmp": "", "sub/local/y.py": "", "sub/anchored.txt": "",
    "sub/deep/anchored.txt": "", "sub/deep/z.tmp": "", "sub/deep/.gitignore": "!*.tmp\n", "sub/deep/a.log": "",
    "sub/build/inner.py": "", "sub/buildx/ok.py": "", "sub/dir.log/inside.py": "",
    "space name/file with space.py": "", "unicode/naïve.py": "",
}


def _make_tree(root: Path) -> None:
    for relative, content in TREE.items():
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(content)
    subprocess.run(["git", "init", "-q", str(root)], check=True)
    (root / ".git" / "info").mkdir(parents=True, exist_ok=True)
    (root / ".git" / "info" / "exclude").write_text("secret.txt\n")


def _git_files(directory: Path) -> set[str]:
    """What git lists as untracked and not ignored, relative to ``directory``."""
    out = subprocess.run(["git", "-c", "core.quotePath=false", "ls-files", "--others", "--exclude-standard", "-z"],
                         cwd=directory, check=True, capture_output=True).stdout
    return {p for p in out.decode().split("\0") if p}


def _walked(root: Path, options: WalkOptions = AS_GIT) -> set[str]:
    return {f.path for f in walk(check_root(root), options)}


def test_walk_matches_git_on_nested_and_negated_rules(tmp_path):
    _make_tree(tmp_path)
    expected = _git_files(tmp_path)
    assert "keep.log" in expected and "sub/deep/z.tmp" in expected and "docs/README.md" in expected  # sanity
    assert _walked(tmp_path) == expected


def test_walk_agrees_with_git_check_ignore_path_by_path(tmp_path):
    _make_tree(tmp_path)
    walked = _walked(tmp_path)
    every = [p for p in TREE if not p.endswith(".gitignore")]
    result = subprocess.run(["git", "check-ignore", "--no-index", "--stdin", "-z"], cwd=tmp_path,
                            input="\0".join(every).encode(), capture_output=True)
    ignored = {p for p in result.stdout.decode().split("\0") if p}
    for path in every:
        assert (path in walked) == (path not in ignored), path


def test_walk_from_a_subfolder_applies_the_rules_above_it(tmp_path):
    _make_tree(tmp_path)
    assert _walked(tmp_path / "sub") == _git_files(tmp_path / "sub")
    assert "deep/a.log" not in _walked(tmp_path / "sub")  # *.log comes from the top's .gitignore


def test_dot_ignore_and_vecsiftignore_apply_and_win_over_gitignore(tmp_path):
    (tmp_path / ".gitignore").write_text("*.gen\n")
    (tmp_path / ".ignore").write_text("!wanted.gen\nnotes/\n")
    (tmp_path / ".vecsiftignore").write_text("draft_*.py\n")
    for name in ("a.gen", "wanted.gen", "notes/n.py", "draft_1.py", "final.py"):
        (tmp_path / name).parent.mkdir(exist_ok=True)
        (tmp_path / name).write_text("x")
    assert _walked(tmp_path, WalkOptions()) == {"wanted.gen", "final.py"}
    assert _walked(tmp_path, WalkOptions(ignore_files=False)) == {"a.gen", "wanted.gen", "notes/n.py", "draft_1.py",
                                                                  "final.py"}


def test_default_skips(tmp_path):
    files = ["src/app.py", "node_modules/lib/index.js", ".venv/lib/x.py", "target/debug/a.rs", "vendor/pkg/a.go",
             "__pycache__/a.pyc", "package-lock.json", "Cargo.lock", "web/app.min.js", ".hidden/secret.py",
             ".env", "dist/bundle.js", ".vecsift/index.sqlite", "image.png"]
    for name in files:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text("x")
    assert _walked(tmp_path, WalkOptions()) == {"src/app.py"}
    with_hidden = _walked(tmp_path, WalkOptions(hidden=True))
    assert ".hidden/secret.py" in with_hidden and ".env" in with_hidden
    assert not any(p.startswith(".vecsift/") for p in with_hidden)  # an index is never indexed


def test_languages_and_globs(tmp_path):
    for name in ("a.py", "b.go", "c.rs", "tests/test_a.py", "docs/x.md"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text("x")
    assert _walked(tmp_path, WalkOptions(languages=frozenset({"python", "go"}))) == {"a.py", "b.go", "tests/test_a.py"}
    assert _walked(tmp_path, WalkOptions(globs=("*.py",))) == {"a.py", "tests/test_a.py"}
    assert _walked(tmp_path, WalkOptions(globs=("*.py", "!tests/*"))) == {"a.py"}


def test_symlinks_are_never_followed(tmp_path):
    (tmp_path / "real.py").write_text("x = 1\n")
    (tmp_path / "loop").mkdir()
    (tmp_path / "loop" / "again").symlink_to(tmp_path / "loop")
    (tmp_path / "outside").symlink_to("/")
    (tmp_path / "alias.py").symlink_to(tmp_path / "real.py")
    skipped = Skipped()
    found = {f.path for f in walk(check_root(tmp_path), WalkOptions(), skipped)}
    assert found == {"real.py"}
    assert {p for p, _ in skipped.entries} == {"loop/again", "outside", "alias.py"}
    assert all("symbolic link" in reason for _, reason in skipped.entries)


def test_files_above_the_size_limit_are_skipped_with_a_reason(tmp_path):
    (tmp_path / "small.py").write_text("x")
    (tmp_path / "big.py").write_text("x" * 5000)
    skipped = Skipped()
    assert {f.path for f in walk(check_root(tmp_path), WalkOptions(max_file_size=1000), skipped)} == {"small.py"}
    assert skipped.entries == [("big.py", "larger than 1000 bytes")]


def test_a_file_deleted_during_the_walk_is_skipped(tmp_path):
    for name in ("a.py", "b.py", "c.py"):
        (tmp_path / name).write_text("x")
    skipped = Skipped()
    walker = walk(check_root(tmp_path), WalkOptions(), skipped)
    first = next(walker)
    (tmp_path / "b.py").unlink()
    rest = [f.path for f in walker]
    assert first.path == "a.py" and rest == ["c.py"]
    assert skipped.entries[0][0] == "b.py" and "cannot be read" in skipped.entries[0][1]


def test_an_unreadable_folder_is_skipped_and_the_walk_goes_on(tmp_path, monkeypatch):
    (tmp_path / "locked").mkdir()
    (tmp_path / "locked" / "x.py").write_text("x")
    (tmp_path / "open.py").write_text("x")
    real_scandir = os.scandir

    def scandir(path):
        if Path(path).name == "locked":
            raise PermissionError(13, "Permission denied")
        return real_scandir(path)

    monkeypatch.setattr(os, "scandir", scandir)
    skipped = Skipped()
    assert {f.path for f in walk(check_root(tmp_path), WalkOptions(), skipped)} == {"open.py"}
    assert skipped.entries == [("locked/", "cannot be read (Permission denied)")]


def _walked_file(path: Path) -> WalkedFile:
    stat = path.stat()
    return WalkedFile(path.name, path, stat.st_size, stat.st_mtime_ns)


@pytest.mark.parametrize(("content", "reason"), [
    (b"\x7fELF\x00\x00binary", "binary (NUL byte)"),
    (b"ok line\nsecond\n\xff\xfe bad bytes\n", "not valid UTF-8 (line 3)"),
    (b"x" * 5_000_000, "minified or generated (a line of 5000000 characters)"),
])
def test_content_that_is_not_indexed_says_why(tmp_path, content, reason):
    path = tmp_path / "f.py"
    path.write_bytes(content)
    _, text, why = read_source(_walked_file(path))
    assert text is None and why == reason


def test_utf8_with_bom_is_text(tmp_path):
    path = tmp_path / "bom.py"
    path.write_bytes("\ufeffx = 'é'\n".encode())
    assert read_source(_walked_file(path))[1] == "x = 'é'\n"


def test_bad_roots_are_usage_errors(tmp_path):
    with pytest.raises(UsageError, match="does not exist"):
        check_root(tmp_path / "nope")
    (tmp_path / "file.py").write_text("x")
    with pytest.raises(UsageError, match="is a file"):
        check_root(tmp_path / "file.py")


def test_bad_max_file_size_is_a_usage_error():
    with pytest.raises(UsageError, match="max_file_size"):
        WalkOptions(max_file_size=0)


def test_a_root_that_its_repository_ignores_is_walked_with_its_own_rules(tmp_path):
    _make_tree(tmp_path)
    (tmp_path / "build" / "deeper").mkdir()
    (tmp_path / "build" / "deeper" / "x.py").write_text("x")
    (tmp_path / "build" / ".gitignore").write_text("skip.py\n")
    (tmp_path / "build" / "skip.py").write_text("x")
    assert _walked(tmp_path / "build") == {"out.py", "deeper/x.py", ".gitignore"}
    assert _walked(tmp_path / "build" / "deeper") == {"x.py"}
    assert _walked(tmp_path / "sub" / "local") == {"y.py"}  # ignored by sub/.gitignore's `local/`
