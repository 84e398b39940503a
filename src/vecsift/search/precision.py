"""Which precision an index is embedded in: the fastest one whose rankings match fp32's.

``auto`` means bf16 where the CPU multiplies bf16 in hardware (AMX or AVX-512 BF16) and
torch is installed, fp32 elsewhere. bf16 vectors stay within cosine 0.996 of fp32's
and the search quality sets show no loss (benchmarks/RESULTS.md); int8 is never
chosen (slower than bf16 on AMX, far slower without it).
"""

from __future__ import annotations

from functools import cache

from vecsift.errors import UsageError

PRECISIONS = ("auto", "fp32", "bf16", "int8", "fp16")


@cache
def cpu_flags() -> frozenset[str]:
    """The CPU feature flags Linux reports (empty elsewhere)."""
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as handle:
            for line in handle:
                if line.startswith("flags"):
                    return frozenset(line.split(":", 1)[1].split())
    except OSError:
        pass
    return frozenset()


def has_fast_bf16() -> bool:
    return bool(cpu_flags() & {"amx_bf16", "avx512_bf16"})


def index_precision(requested: str) -> str:
    """``requested``, or for ``auto`` the rule above."""
    if requested not in PRECISIONS:
        raise UsageError(f"unknown precision {requested!r}; choose one of {', '.join(PRECISIONS)}")
    if requested != "auto":
        return requested
    from vecsift.backend.loader import torch_installed

    return "bf16" if torch_installed() and has_fast_bf16() else "fp32"
