"""Progress of a scheduling call: texts, tokens, throughput, and ETA when the total is known."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from tqdm.auto import tqdm

ProgressCallback = Callable[[int], None]


class Progress:
    """Counts what was embedded; drives a tqdm bar on stderr or calls the user's callback."""

    def __init__(self, progress: bool | ProgressCallback, total: int | None) -> None:
        self.texts = 0
        self.tokens = 0
        self._lock = threading.Lock()
        self._started = time.perf_counter()
        self._callback = progress if callable(progress) else None
        self._bar = tqdm(total=total, unit="text", disable=None, dynamic_ncols=True) if progress is True else None

    def update(self, texts: int, tokens: int) -> None:
        with self._lock:
            self.texts += texts
            self.tokens += tokens
            if self._bar is not None:
                self._bar.update(texts)
                self._bar.set_postfix(tokens=self.tokens, tok_s=f"{self.tokens / self.elapsed():.0f}", refresh=False)
        if self._callback is not None:
            self._callback(texts)

    def elapsed(self) -> float:
        return max(time.perf_counter() - self._started, 1e-9)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
