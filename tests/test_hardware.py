"""What the CPU can do, as oneDNN will use it: the flags Linux reports, capped by ONEDNN_MAX_CPU_ISA."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from vecsift import hardware

AMX_XEON = frozenset({"avx512f", "avx512_vnni", "avx512_bf16", "amx_tile", "amx_bf16", "amx_int8"})
ZEN4_EPYC = frozenset({"avx512f", "avx512_vnni", "avx512_bf16"})
OLDER = frozenset({"avx2", "fma"})


@pytest.fixture
def cpu(monkeypatch):
    """Pretend to be a CPU with the given flags and oneDNN cap (None: unset)."""
    def pretend(flags: frozenset[str], cap: str | None = None, variable: str = "ONEDNN_MAX_CPU_ISA") -> None:
        for name in ("ONEDNN_MAX_CPU_ISA", "DNNL_MAX_CPU_ISA"):
            monkeypatch.delenv(name, raising=False)
        if cap is not None:
            monkeypatch.setenv(variable, cap)
        monkeypatch.setattr(hardware, "cpu_flags", lambda: flags)
        hardware.onednn_isa_cap.cache_clear()
        hardware.cpu_model.cache_clear()

    yield pretend
    hardware.onednn_isa_cap.cache_clear()
    hardware.cpu_model.cache_clear()


def test_flags_decide_without_a_cap(cpu):
    cpu(AMX_XEON)
    assert hardware.has_amx_int8() and hardware.has_fast_bf16()
    cpu(ZEN4_EPYC)
    assert not hardware.has_amx_int8() and hardware.has_fast_bf16()
    cpu(OLDER)
    assert not hardware.has_amx_int8() and not hardware.has_fast_bf16()


@pytest.mark.parametrize(("cap", "amx_int8", "bf16"), [
    ("ALL", True, True), ("AVX512_CORE_AMX", True, True), ("avx10_1_512_amx_fp16", True, True),
    ("AVX512_CORE_FP16", False, True), ("AVX512_CORE_BF16", False, True),
    ("AVX512_CORE_VNNI", False, False), ("AVX2", False, False),
    ("NOT_AN_ISA", True, True),  # oneDNN ignores names it does not know, and so does vecsift
])
def test_a_onednn_cap_below_amx_is_a_cpu_without_it(cpu, cap, amx_int8, bf16):
    cpu(AMX_XEON, cap)
    assert (hardware.has_amx_int8(), hardware.has_fast_bf16()) == (amx_int8, bf16)


def test_the_older_variable_name_and_the_precedence(cpu, monkeypatch):
    cpu(AMX_XEON, "AVX512_CORE_BF16", variable="DNNL_MAX_CPU_ISA")
    assert hardware.onednn_isa_cap() == "avx512_core_bf16" and not hardware.has_amx_int8()
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "ALL")  # the newer name wins, as in oneDNN
    hardware.onednn_isa_cap.cache_clear()
    assert hardware.onednn_isa_cap() is None and hardware.has_amx_int8()


def test_a_cap_never_adds_what_the_cpu_lacks(cpu):
    cpu(ZEN4_EPYC, "ALL")
    assert not hardware.has_amx_int8()
    cpu(OLDER, "AVX512_CORE_AMX")
    assert not hardware.has_fast_bf16()


def test_the_cpu_model_names_the_cap(cpu):
    cpu(AMX_XEON, "avx512_core_bf16")
    assert hardware.cpu_model().endswith(" (oneDNN capped at AVX512_CORE_BF16)")


def test_a_capped_process_chooses_the_non_amx_int8_kernel():
    """The whole chain in a fresh process, as the test suite runs under a cap: the int8 kernel that is
    fast without AMX (oneDNN's quantized GEMM is ~270x slower there, measured under this very cap)."""
    pytest.importorskip("torch")
    script = ("from vecsift.backend.driver.torch import TorchDriver, ops\n"
              "from vecsift.backend.precision import BF16_MIN_SPEEDUP\n"
              "driver = TorchDriver('cpu', 'int8')\n"
              "print(driver.int8_kernel, driver.dtype, ops.bf16_gemm_speedup() >= BF16_MIN_SPEEDUP)")
    env = {**os.environ, "ONEDNN_MAX_CPU_ISA": "AVX512_CORE_BF16"}
    run = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    kernel, dtype, bf16_is_faster = run.stdout.split()
    assert kernel == "dequantized"
    assert dtype == ("torch.bfloat16" if bf16_is_faster == "True" else "torch.float32")


def test_info_names_the_cpu_and_its_cap(cpu, capsys):
    from vecsift.cli.main import main

    cpu(AMX_XEON, "AVX512_CORE_VNNI")
    assert main(["info", "--driver", "numpy", "--json"]) == 0
    facts = json.loads(capsys.readouterr().out)
    assert facts["cpu"] == hardware.cpu_model() and facts["cpu"].endswith("(oneDNN capped at AVX512_CORE_VNNI)")
