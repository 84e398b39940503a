"""What this CPU can do, read once from /proc/cpuinfo: it decides default precisions and kernels.

The development machines differ (an Intel Xeon with AMX tiles, an AMD EPYC with AVX-512 BF16
and VNNI but no AMX), and the right kernel differs with them.
"""

from __future__ import annotations

from functools import cache


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


@cache
def cpu_model() -> str:
    """The CPU's model name as Linux reports it (``platform.processor()`` elsewhere)."""
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as handle:
            for line in handle:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    import platform

    return platform.processor() or "unknown CPU"


def has_fast_bf16() -> bool:
    """bf16 multiplies in hardware: AMX tiles or AVX-512 BF16."""
    return bool(cpu_flags() & {"amx_bf16", "avx512_bf16"})


def has_amx_int8() -> bool:
    """AMX int8 tiles: the only CPUs where oneDNN's int8 GEMM beats fp32 at these shapes."""
    return "amx_int8" in cpu_flags()
