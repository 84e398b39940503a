"""Which precision an index is embedded in: the fastest one whose rankings match fp32's.

``auto`` means bf16 where the CPU multiplies bf16 in hardware (AMX or AVX-512 BF16) and
torch is installed, fp32 elsewhere. bf16 vectors stay within cosine 0.996 of fp32's
and the search quality sets show no loss (benchmarks/RESULTS.md); int8 is never
chosen (slower than bf16 on AMX, far slower without it).
"""

from __future__ import annotations

from vecsift.errors import UsageError
from vecsift.hardware import has_fast_bf16

PRECISIONS = ("auto", "fp32", "bf16", "int8", "fp16")


def index_precision(requested: str) -> str:
    """``requested``, or for ``auto`` the rule above."""
    if requested not in PRECISIONS:
        raise UsageError(f"unknown precision {requested!r}; choose one of {', '.join(PRECISIONS)}")
    if requested != "auto":
        return requested
    from vecsift.backend.loader import torch_installed

    return "bf16" if torch_installed() and has_fast_bf16() else "fp32"
