"""Precisions: the names, which driver runs which where, and what ``precision="auto"`` picks here.

``auto`` picks, once per machine and model, the fastest precision whose vectors stay within min cosine
:data:`PROBE_MIN_COSINE` of fp32's on a probe: bf16 where it runs in hardware (CPUs with AMX or AVX-512
BF16, with torch installed, whose bf16 GEMMs are at least :data:`BF16_MIN_SPEEDUP` times as fast as fp32's;
CUDA GPUs), fp32 elsewhere. int8 is never picked: on AMX CPUs it is slower than bf16 (benchmarks/RESULTS.md)
and without AMX it runs bf16's (or fp32's) GEMMs with int8's rounding; it stays an explicit choice. The
decision and its reason are cached under ``$XDG_CACHE_HOME/vecsift`` (``~/.cache/vecsift``), keyed by
hardware, torch version and model, so the probes run once.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

from vecsift.errors import BackendError
from vecsift.hardware import cpu_model, has_fast_bf16

PRECISIONS = ("fp32", "bf16", "fp16", "int8")
AUTO = "auto"
#: (kind, driver) → the precisions that driver runs on that kind of device
SUPPORT: dict[tuple[str, str], tuple[str, ...]] = {
    ("cpu", "numpy"): ("fp32",),
    ("cpu", "torch"): ("fp32", "bf16", "int8"),
    ("cuda", "torch"): ("fp32", "bf16", "fp16"),
}
#: the lowest cosine to fp32 a precision may reach on the probe texts to be picked by ``auto``
PROBE_MIN_COSINE = 0.996
#: how many times faster than fp32's a CPU's bf16 GEMMs must be for bf16 to be worth its rounding (AMX: ~9,
#: an AMD EPYC's AVX-512 BF16: ~3, oneDNN capped below AMX on an Intel Xeon: ~0.55)
BF16_MIN_SPEEDUP = 1.25
#: short and long, code and prose: what the probe embeds in fp32 and in the candidate precision
PROBE_TEXTS = (
    "def retry(fn, attempts=3):\n    for i in range(attempts):\n        try:\n            return fn()\n"
    "        except Exception:\n            time.sleep(2 ** i)\n",
    "How do I parse a JSON file in Python?",
    "fn main() { let v: Vec<u32> = (0..10).map(|x| x * x).collect(); println!(\"{:?}\", v); }",
    "SELECT u.id, COUNT(o.id) FROM users u LEFT JOIN orders o ON o.user_id = u.id GROUP BY u.id;",
    "retry with exponential backoff and jitter",
    "Ünïcödé façade naïve — 日本語のテキスト — emoji 🚀",
    "a",
    "word " * 300,
)


def check_name(precision: str, allow_auto: bool = True) -> str:
    """``precision`` if it names one (or ``auto``), else a :class:`BackendError` listing the names."""
    if precision not in PRECISIONS and not (allow_auto and precision == AUTO):
        raise BackendError(f"unknown precision {precision!r}; choose one of {[*PRECISIONS, AUTO]}")
    return precision


def check_supported(kind: str, driver: str, precision: str) -> None:
    """The one check of a (kind, driver, precision) combination: a :class:`BackendError` that lists what is
    supported when it is not (an unknown name included)."""
    if precision not in SUPPORT.get((kind, driver), ()):
        combos = ", ".join(f"{k}/{d}: {list(p)}" for (k, d), p in SUPPORT.items())
        raise BackendError(f"precision {precision!r} is not supported by the {driver} driver on {kind}; "
                           f"supported: {combos}")


@dataclass(frozen=True)
class PrecisionChoice:
    """What ``auto`` picked, and why (``vecsift info`` shows both)."""

    precision: str
    reason: str


def choose_precision(kind: str, torch_installed: bool, model_key: str, probe: Callable[[str], float],
                     bf16_speedup: Callable[[], float]) -> PrecisionChoice:
    """``auto`` on this machine for the model ``model_key`` names; ``probe(precision)`` embeds the probe texts
    in that precision and returns the lowest cosine to fp32, ``bf16_speedup()`` measures the CPU's bf16 GEMMs
    against fp32's (both run only when no cached decision exists)."""
    if not torch_installed:
        return PrecisionChoice("fp32", "torch is not installed: the NumPy driver runs fp32 only")
    if kind == "cpu" and not has_fast_bf16():
        return PrecisionChoice("fp32", f"{cpu_model()} has no bf16 arithmetic (AMX or AVX-512 BF16)")
    hardware = cpu_model() if kind == "cpu" else _gpu_name()
    key = json.dumps([kind, hardware, _torch_version(), model_key])
    cache = _read_cache()
    if key in cache:
        return PrecisionChoice(**cache[key])
    speedup = bf16_speedup() if kind == "cpu" else None
    if speedup is not None and speedup < BF16_MIN_SPEEDUP:
        choice = PrecisionChoice("fp32", f"bf16 GEMMs run only {speedup:.2f}× as fast as fp32's on {hardware} "
                                         f"(< {BF16_MIN_SPEEDUP})")
        _write_cache({**cache, key: asdict(choice)})
        return choice
    cosine = probe("bf16")
    where = "AMX / AVX-512 BF16" if kind == "cpu" else "the GPU"
    faster = f" (GEMMs {speedup:.1f}× as fast as fp32's)" if speedup is not None else ""
    if cosine >= PROBE_MIN_COSINE:
        choice = PrecisionChoice("bf16", f"bf16 runs on {where} of {hardware}{faster}; min cosine to fp32 on the "
                                         f"probe {cosine:.4f} ≥ {PROBE_MIN_COSINE}")
    else:
        choice = PrecisionChoice("fp32", f"bf16 on {hardware} reached only min cosine {cosine:.4f} to fp32 on the "
                                         f"probe (< {PROBE_MIN_COSINE})")
    _write_cache({**cache, key: asdict(choice)})
    return choice


def cache_path() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "vecsift" / "precision.json"


def _read_cache() -> dict[str, dict[str, str]]:
    try:
        data = json.loads(cache_path().read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}  # no cache yet, or an unreadable one: probe again
    return data if isinstance(data, dict) else {}


def _write_cache(entries: dict[str, dict[str, str]]) -> None:
    """Atomically; a cache that cannot be written costs a probe next time, nothing else."""
    path = cache_path()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, temporary = tempfile.mkstemp(prefix=".precision.", dir=path.parent)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump(entries, handle, indent=1)
        os.replace(temporary, path)
    except OSError:
        pass


def _torch_version() -> str:
    from importlib.metadata import version

    return version("torch")  # without importing torch (a cached decision must stay cheap)


def _gpu_name() -> str:
    import torch

    return torch.cuda.get_device_name(0)
