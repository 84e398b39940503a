"""Every Python snippet of the README runs as written (from the repository's root), except the one that
needs a running server."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SNIPPETS = re.findall(r"```python\n(.*?)```", (ROOT / "README.md").read_text(), re.S)


def test_the_readme_has_python_snippets():
    assert len(SNIPPETS) >= 2


@pytest.mark.slow
@pytest.mark.parametrize("code", [s for s in SNIPPETS if "base_url=" not in s], ids=lambda s: s.split("\n")[0][:40])
def test_readme_snippet_runs(code, tmp_path):
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "VECSIFT_INDEX_DIR": str(tmp_path / "indexes")}
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
