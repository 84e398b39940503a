"""`vecsift watch`: keep an index fresh while files change.

File events from ``watchfiles`` (the OS's notifications, debounced) only say *that*
something changed; the refresh then finds *what* by its usual stat-and-hash
comparison, so a burst of saves costs one refresh and an event the walk would
ignore costs a stat pass and nothing more.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path

from vecsift.search.index import Index
from vecsift.search.refresh import RefreshSummary
from vecsift.search.walk import INDEX_DIR_NAME, VCS_DIRS

DEBOUNCE_MS = 500


def _relevant(index: Index) -> Callable[[object, str], bool]:
    """Events outside the index folder and VCS folders (the index's own writes would loop forever)."""
    index_dir = str(index.directory)

    def keep(_change: object, path: str) -> bool:
        if path.startswith(index_dir):
            return False
        parts = Path(path).parts
        return not any(part in VCS_DIRS or part == INDEX_DIR_NAME for part in parts)

    return keep


def watch(index: Index, *, on_refresh: Callable[[RefreshSummary], None], stop: threading.Event | None = None,
          debounce_ms: int = DEBOUNCE_MS) -> None:
    """Refresh now, then after every debounced burst of changes under the root, until ``stop`` is set."""
    from watchfiles import watch as file_events

    on_refresh(index.refresh())
    for _ in file_events(index.root, watch_filter=_relevant(index), debounce=debounce_ms, stop_event=stop,
                         raise_interrupt=True, yield_on_timeout=False):
        summary = index.refresh()
        if summary.files_added or summary.files_changed or summary.files_removed or summary.rebuilt:
            on_refresh(summary)
