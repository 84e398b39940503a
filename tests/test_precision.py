"""``precision="auto"``: the fastest precision that passes a probe against fp32, chosen once per machine and
model, with its reason in ``describe()``; and the one table of which driver runs which precision where."""

from __future__ import annotations

import json

import pytest

from vecsift import Embedder, load_backend
from vecsift.backend import precision as precision_module
from vecsift.backend.precision import BF16_MIN_SPEEDUP, PROBE_MIN_COSINE, cache_path, check_supported, choose_precision
from vecsift.cli.main import main
from vecsift.errors import BackendError
from vecsift.hardware import has_fast_bf16


@pytest.fixture
def fresh_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    return tmp_path / "cache" / "vecsift" / "precision.json"


class CountingProbe:
    def __init__(self, cosine: float) -> None:
        self.cosine = cosine
        self.calls: list[str] = []

    def __call__(self, candidate: str) -> float:
        self.calls.append(candidate)
        return self.cosine


class CountingSpeedup:
    def __init__(self, speedup: float) -> None:
        self.speedup = speedup
        self.calls = 0

    def __call__(self) -> float:
        self.calls += 1
        return self.speedup


FAST = 9.0  # an AMX CPU's bf16 GEMMs against fp32's


def test_bf16_is_chosen_once_when_it_passes_the_probe(fresh_cache, monkeypatch):
    monkeypatch.setattr(precision_module, "has_fast_bf16", lambda: True)
    probe, speedup = CountingProbe(0.9993), CountingSpeedup(FAST)
    first = choose_precision("cpu", True, "model-a", probe, speedup)
    assert first.precision == "bf16" and "0.9993" in first.reason and probe.calls == ["bf16"]
    assert "GEMMs 9.0× as fast as fp32's" in first.reason and speedup.calls == 1
    assert cache_path() == fresh_cache and fresh_cache.is_file()
    again = choose_precision("cpu", True, "model-a", probe, speedup)
    assert again == first and probe.calls == ["bf16"] and speedup.calls == 1  # cached: no second probe
    choose_precision("cpu", True, "model-b", probe, speedup)  # another model is probed on its own
    assert probe.calls == ["bf16", "bf16"]


def test_a_failed_probe_keeps_fp32_and_says_why(fresh_cache, monkeypatch):
    monkeypatch.setattr(precision_module, "has_fast_bf16", lambda: True)
    choice = choose_precision("cpu", True, "model-a", CountingProbe(PROBE_MIN_COSINE - 0.01), CountingSpeedup(FAST))
    assert choice.precision == "fp32" and "reached only min cosine 0.9860" in choice.reason


def test_bf16_slower_than_fp32_keeps_fp32_without_a_quality_probe(fresh_cache, monkeypatch):
    """AVX-512 BF16 does not make bf16 fast everywhere (oneDNN capped below AMX on a Xeon: ~0.55× fp32)."""
    monkeypatch.setattr(precision_module, "has_fast_bf16", lambda: True)
    probe = CountingProbe(1.0)
    choice = choose_precision("cpu", True, "m", probe, CountingSpeedup(0.55))
    assert choice.precision == "fp32" and probe.calls == []
    assert "bf16 GEMMs run only 0.55× as fast as fp32's" in choice.reason and f"< {BF16_MIN_SPEEDUP}" in choice.reason
    speedup = CountingSpeedup(FAST)
    assert choose_precision("cpu", True, "m", probe, speedup) == choice and speedup.calls == 0  # cached


def test_the_gpu_is_not_asked_for_a_cpu_speedup(fresh_cache, monkeypatch):
    monkeypatch.setattr(precision_module, "_gpu_name", lambda: "a test GPU")
    speedup = CountingSpeedup(0.1)
    choice = choose_precision("cuda", True, "m", CountingProbe(0.999), speedup)
    assert choice.precision == "bf16" and "of a test GPU;" in choice.reason and speedup.calls == 0


def test_no_bf16_hardware_or_no_torch_means_fp32_without_a_probe(fresh_cache, monkeypatch):
    probe, speedup = CountingProbe(1.0), CountingSpeedup(FAST)
    monkeypatch.setattr(precision_module, "has_fast_bf16", lambda: False)
    assert "has no bf16 arithmetic" in choose_precision("cpu", True, "m", probe, speedup).reason
    assert "torch is not installed" in choose_precision("cpu", False, "m", probe, speedup).reason
    assert probe.calls == [] and speedup.calls == 0 and not fresh_cache.exists()


def test_an_unreadable_cache_is_probed_again_and_rewritten(fresh_cache, monkeypatch):
    monkeypatch.setattr(precision_module, "has_fast_bf16", lambda: True)
    fresh_cache.parent.mkdir(parents=True)
    fresh_cache.write_text("{ not json")
    probe = CountingProbe(0.999)
    assert choose_precision("cpu", True, "m", probe, CountingSpeedup(FAST)).precision == "bf16"
    assert probe.calls == ["bf16"] and len(json.loads(fresh_cache.read_text())) == 1


@pytest.mark.skipif(not has_fast_bf16(), reason="this CPU has no bf16 arithmetic: auto is fp32 without a probe")
def test_auto_on_this_machine_runs_the_real_probes_and_reports_them(fresh_cache, capsys):
    """bf16 where this CPU's bf16 GEMMs are fast (AMX, an EPYC's AVX-512 BF16), fp32 where they are not
    (oneDNN capped below AMX here): whichever it is, the reason says what was measured."""
    from vecsift.backend.driver.torch import ops

    expected = "bf16" if ops.bf16_gemm_speedup() >= BF16_MIN_SPEEDUP else "fp32"
    backend = load_backend("cpu", "all-MiniLM-L6-v2", precision="auto")
    assert backend.driver.precision() == expected
    reason = backend.describe()["precision_choice"]
    if expected == "bf16":
        assert reason.startswith("auto: bf16 runs on AMX / AVX-512 BF16") and "as fast as fp32's" in reason
    else:
        assert reason.startswith("auto: bf16 GEMMs run only")
    assert main(["info", "--precision", "auto", "--json"]) == 0
    facts = json.loads(capsys.readouterr().out)
    assert facts["precision"] == expected and facts["precision_choice"] == reason
    embedder = Embedder("all-MiniLM-L6-v2", precision="auto")
    assert embedder.backends[0].driver.precision() == expected


def test_auto_with_the_numpy_driver_is_fp32():
    backend = load_backend("cpu", "all-MiniLM-L6-v2", driver="numpy", precision="auto")
    assert backend.driver.precision() == "fp32"
    assert backend.describe()["precision_choice"] == "auto: the NumPy driver runs fp32 only"


def test_one_table_says_which_driver_runs_which_precision():
    check_supported("cpu", "torch", "int8")
    with pytest.raises(BackendError, match=r"precision 'fp16' is not supported by the torch driver on cpu"):
        check_supported("cpu", "torch", "fp16")
    with pytest.raises(BackendError, match=r"precision 'fp8' is not supported by the torch driver on cpu"):
        check_supported("cpu", "torch", "fp8")
    with pytest.raises(BackendError, match=r"precision 'fp8' is not supported"):
        load_backend("cpu", precision="fp8")


def test_kind_auto_is_the_gpu_when_usable_else_the_cpu():
    from vecsift.backend.loader import cuda_available

    backend = load_backend("auto", "all-MiniLM-L6-v2", driver="numpy" if not cuda_available() else None)
    assert backend.is_gpu() == cuda_available()
    assert [b.is_gpu() for b in Embedder("all-MiniLM-L6-v2", kind="auto").backends] == [cuda_available()]
