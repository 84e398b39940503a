"""Where the index of a root lives.

Default: the user cache folder (``$XDG_CACHE_HOME/vecsift/indexes``, else
``~/.cache/vecsift/indexes``), one folder per root, named after the root and a hash
of its real path, so repositories are not polluted. ``VECSIFT_INDEX_DIR`` or an
explicit ``index_dir`` names another base folder; ``repo_local`` keeps the index in
``<root>/.vecsift/`` (which the walk never indexes).
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from vecsift.search.walk import INDEX_DIR_NAME


def default_base() -> Path:
    configured = os.environ.get("VECSIFT_INDEX_DIR")
    if configured:
        return Path(configured).expanduser()
    cache = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(cache).expanduser() / "vecsift" / "indexes"


def index_dir_for(root: Path, index_dir: str | os.PathLike[str] | None = None, repo_local: bool = False) -> Path:
    """The index folder of ``root`` (an absolute real path)."""
    if repo_local:
        return root / INDEX_DIR_NAME
    base = Path(index_dir).expanduser() if index_dir is not None else default_base()
    key = hashlib.blake2b(str(root).encode("utf-8", "surrogateescape"), digest_size=8).hexdigest()
    return base / f"{root.name or 'root'}-{key}"
