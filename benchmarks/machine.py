"""A one-line description of the machine and libraries, for benchmark reports."""

from __future__ import annotations

import os
import platform
from pathlib import Path

import numpy as np
from threadpoolctl import threadpool_info


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def describe_machine() -> str:
    blas = ", ".join(
        f"{i.get('internal_api')} {i.get('version')} ({i.get('architecture')})"
        for i in threadpool_info() if i.get("user_api") == "blas"
    )
    try:
        import torch

        torch_version = torch.__version__
    except ImportError:
        torch_version = "not installed"
    return (
        f"{cpu_model()}, {os.cpu_count()} cores, Python {platform.python_version()}, "
        f"NumPy {np.__version__} ({blas}), torch {torch_version}"
    )


def write_section(path: Path, heading: str, command: str, body: str) -> None:
    """Replace (or add) one ``## heading`` section of a results file, keeping the others."""
    import re
    import time

    text = path.read_text() if path.exists() else "# Benchmark results\n"
    section = f"{heading}\n\nWritten by `{command}` on {time.strftime('%Y-%m-%d')}.\n\n{body}\n"
    pattern = re.compile(rf"^{re.escape(heading)}\n.*?(?=^## |\Z)", re.S | re.M)
    text = pattern.sub(lambda _: section + "\n", text) if pattern.search(text) else f"{text.rstrip()}\n\n{section}"
    path.write_text(text.rstrip() + "\n")
