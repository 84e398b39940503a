"""``precision="auto"``: the fastest precision that passes a probe against fp32, chosen once per machine and
model, with its reason in ``describe()``; and the one table of which driver runs which precision where."""

from __future__ import annotations

import json

import pytest

from vecsift import Embedder, load_backend
from vecsift.backend import precision as precision_module
from vecsift.backend.precision import PROBE_MIN_COSINE, cache_path, check_supported, choose_precision
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


def test_bf16_is_chosen_once_when_it_passes_the_probe(fresh_cache, monkeypatch):
    monkeypatch.setattr(precision_module, "has_fast_bf16", lambda: True)
    probe = CountingProbe(0.9993)
    first = choose_precision("cpu", True, "model-a", probe)
    assert first.precision == "bf16" and "0.9993" in first.reason and probe.calls == ["bf16"]
    assert cache_path() == fresh_cache and fresh_cache.is_file()
    again = choose_precision("cpu", True, "model-a", probe)
    assert again == first and probe.calls == ["bf16"]  # cached: no second probe
    choose_precision("cpu", True, "model-b", probe)  # another model is probed on its own
    assert probe.calls == ["bf16", "bf16"]


def test_a_failed_probe_keeps_fp32_and_says_why(fresh_cache, monkeypatch):
    monkeypatch.setattr(precision_module, "has_fast_bf16", lambda: True)
    choice = choose_precision("cpu", True, "model-a", CountingProbe(PROBE_MIN_COSINE - 0.01))
    assert choice.precision == "fp32" and "reached only min cosine 0.9860" in choice.reason


def test_no_bf16_hardware_or_no_torch_means_fp32_without_a_probe(fresh_cache, monkeypatch):
    probe = CountingProbe(1.0)
    monkeypatch.setattr(precision_module, "has_fast_bf16", lambda: False)
    assert "has no bf16 arithmetic" in choose_precision("cpu", True, "m", probe).reason
    assert "torch is not installed" in choose_precision("cpu", False, "m", probe).reason
    assert probe.calls == [] and not fresh_cache.exists()


def test_an_unreadable_cache_is_probed_again_and_rewritten(fresh_cache, monkeypatch):
    monkeypatch.setattr(precision_module, "has_fast_bf16", lambda: True)
    fresh_cache.parent.mkdir(parents=True)
    fresh_cache.write_text("{ not json")
    probe = CountingProbe(0.999)
    assert choose_precision("cpu", True, "m", probe).precision == "bf16" and probe.calls == ["bf16"]
    assert len(json.loads(fresh_cache.read_text())) == 1


@pytest.mark.skipif(not has_fast_bf16(), reason="this CPU has no bf16 arithmetic: auto is fp32 without a probe")
def test_auto_on_this_machine_runs_the_real_probe_and_reports_it(fresh_cache, capsys):
    backend = load_backend("cpu", "all-MiniLM-L6-v2", precision="auto")
    assert backend.driver.precision() == "bf16"
    assert backend.describe()["precision_choice"].startswith("auto: bf16 runs on AMX / AVX-512 BF16")
    assert main(["info", "--precision", "auto", "--json"]) == 0
    facts = json.loads(capsys.readouterr().out)
    assert facts["precision"] == "bf16" and "min cosine to fp32 on the probe" in facts["precision_choice"]
    embedder = Embedder("all-MiniLM-L6-v2", precision="auto")
    assert embedder.backends[0].driver.precision() == "bf16"


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
