"""What this CPU can do, read once from /proc/cpuinfo: it decides default precisions and kernels.

The development machines differ (an Intel Xeon with AMX tiles, an AMD EPYC with AVX-512 BF16
and VNNI but no AMX), and the right kernel differs with them. oneDNN's own ISA cap
(``ONEDNN_MAX_CPU_ISA``) counts too: capped below AMX, oneDNN runs as it does on a CPU without
AMX, so the kernels are chosen as they would be there (which is also how an AMX machine runs the
test suite the way a non-AMX one does).
"""

from __future__ import annotations

import os
from functools import cache

#: oneDNN's ISA levels (the bit masks of its ``dnnl_cpu_isa_t``) by the names ``ONEDNN_MAX_CPU_ISA``
#: takes; a level includes every level whose bits it contains
_ONEDNN_ISAS = {"sse41": 0x1, "avx": 0x3, "avx2": 0x7, "avx2_vnni": 0xF, "avx2_vnni_2": 0x1F, "avx512_core": 0x27,
                "avx512_core_vnni": 0x67, "avx512_core_bf16": 0xE7, "avx10_1_512": 0x1EF, "avx512_core_fp16": 0x1EF,
                "avx10_1_512_amx": 0xFEF, "avx512_core_amx": 0xFEF, "avx10_1_512_amx_fp16": 0x1FEF,
                "avx512_core_amx_fp16": 0x1FEF}


def _cpuinfo_field(name: str) -> str | None:
    """The first value of ``name`` in /proc/cpuinfo (None where there is none, or no /proc)."""
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as handle:
            for line in handle:
                if line.startswith(name):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return None


@cache
def cpu_flags() -> frozenset[str]:
    """The CPU feature flags Linux reports (empty elsewhere)."""
    return frozenset((_cpuinfo_field("flags") or "").split())


@cache
def cpu_model() -> str:
    """The CPU's model name as Linux reports it (``platform.processor()`` elsewhere), with oneDNN's ISA cap
    when one is set (it changes what runs fast, and so what is chosen and measured)."""
    import platform

    name = _cpuinfo_field("model name") or platform.processor() or "unknown CPU"
    cap = onednn_isa_cap()
    return f"{name} (oneDNN capped at {cap.upper()})" if cap else name


@cache
def onednn_isa_cap() -> str | None:
    """The ISA level oneDNN is capped at (``ONEDNN_MAX_CPU_ISA``, or its older name ``DNNL_MAX_CPU_ISA``,
    lower case), or None when it may use all the CPU has (unset, ``ALL``, or a name oneDNN does not know)."""
    for variable in ("ONEDNN_MAX_CPU_ISA", "DNNL_MAX_CPU_ISA"):
        value = os.environ.get(variable, "").strip().lower()
        if value:
            return value if value in _ONEDNN_ISAS else None
    return None


def _onednn_may_use(isa: str) -> bool:
    """Whether oneDNN's cap (if any) lets it use the ISA level ``isa``."""
    cap = onednn_isa_cap()
    return cap is None or _ONEDNN_ISAS[cap] & _ONEDNN_ISAS[isa] == _ONEDNN_ISAS[isa]


def has_fast_bf16() -> bool:
    """bf16 multiplies in hardware: AMX tiles or AVX-512 BF16 (and oneDNN allowed to use them)."""
    flags = cpu_flags()
    return (("amx_bf16" in flags and _onednn_may_use("avx512_core_amx"))
            or ("avx512_bf16" in flags and _onednn_may_use("avx512_core_bf16")))


def has_amx_int8() -> bool:
    """AMX int8 tiles, and oneDNN allowed to use them: the only CPUs where oneDNN's int8 GEMM beats fp32 at
    these shapes."""
    return "amx_int8" in cpu_flags() and _onednn_may_use("avx512_core_amx")
