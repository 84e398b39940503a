"""The EmbedBackend contract as GenericBackend(NumpyDriver, ClassicBert) implements it."""

from __future__ import annotations

import gc

import numpy as np
import pytest

from fakes import resident_bytes
from vecsift import EmbedBackend, Encoding, GenericBackend, detect_backends, load_backend
from vecsift.backend.driver.numpy_driver import NumpyDriver
from vecsift.backend.loader import cuda_available
from vecsift.errors import BackendError, EncodingError


def test_contract_basics(backend, tokenizer):
    assert isinstance(backend, EmbedBackend)
    assert backend.is_gpu() is False and backend.supports_clone() is True
    assert backend.max_tokens() == 512 and backend.name() == "CPU (numpy)"
    vectors = backend.embed_batch(tokenizer.encode(["def f(): pass", "hello", "x" * 5000]))
    assert vectors.dtype == np.float32 and vectors.shape == (3, 384)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-6)


def test_empty_batch_has_the_model_dimension(backend):
    out = backend.embed_batch([])
    assert out.shape == (0, 384) and out.dtype == np.float32


def test_rows_do_not_depend_on_batch_company(backend, tokenizer):
    encodings = tokenizer.encode(["alpha beta", "a much longer text " * 30, "gamma"])
    together = backend.embed_batch(encodings)
    alone = np.concatenate([backend.embed_batch([e]) for e in encodings])
    np.testing.assert_allclose(together, alone, atol=1e-6)


def test_sub_batching_does_not_change_results(tokenizer):
    backend = load_backend(driver="numpy")
    encodings = tokenizer.encode([f"text number {i} " * (i % 7 + 1) for i in range(40)])
    whole = backend.embed_batch(encodings)
    backend.driver.preferred_batch_tokens = 1  # every input in its own forward pass
    np.testing.assert_allclose(backend.embed_batch(encodings), whole, atol=1e-6)


def test_clone_shares_weights(backend, tokenizer):
    clone = backend.clone_backend()
    assert clone is not backend and clone.driver is not backend.driver
    assert clone.arch.word_embeddings is backend.arch.word_embeddings
    assert np.shares_memory(clone.arch.layers[0].ffn_in_w, backend.weights._map)
    encodings = tokenizer.encode(["same result from a clone"])
    np.testing.assert_array_equal(clone.embed_batch(encodings), backend.embed_batch(encodings))


@pytest.mark.parametrize("driver", ["numpy", "torch"])
def test_eight_clones_do_not_copy_the_weights(driver, tokenizer):
    """Clones share the arch (memory-mapped weights, the one stacked QKV copy made at load): eight clones that
    each ran a batch grow resident memory by less than one copy of the weights."""
    backend = load_backend("cpu", "all-MiniLM-L6-v2", driver=driver)
    clone = backend.clone_backend()
    assert clone.arch is backend.arch and clone.driver is not backend.driver
    encodings = tokenizer.encode(["touch every weight once"])
    backend.embed_batch(encodings)  # page the weights in before measuring
    gc.collect()
    before = resident_bytes()
    clones = [backend.clone_backend() for _ in range(8)]
    for clone in clones:
        clone.embed_batch(encodings)
    growth = resident_bytes() - before
    assert growth < backend.weights.path.stat().st_size, f"8 clones grew resident memory by {growth / 2**20:.0f} MiB"


def test_gpu_backend_cannot_clone(backend):
    gpu_like = GenericBackend(NumpyDriver(), backend.arch, True, backend.weights)
    assert gpu_like.supports_clone() is False and gpu_like.name().startswith("GPU")
    with pytest.raises(BackendError, match="cannot be cloned"):
        gpu_like.clone_backend()


def test_token_id_outside_vocabulary(backend):
    with pytest.raises(EncodingError, match=r"input 0 holds token id 30522, outside the vocabulary of size 30522"):
        backend.embed_batch([Encoding.from_ids([101, 30522, 102])])
    with pytest.raises(EncodingError, match=r"input 2 holds token id 40000, outside the vocabulary"):  # checked packed
        backend.embed_batch([Encoding.from_ids([101, 102]), Encoding.from_ids([101, 7, 102]),
                             Encoding.from_ids([101, 5, 40000, 102])])


def test_token_type_outside_model(backend):
    with pytest.raises(EncodingError, match="token type id 2 is out of range"):
        backend.embed_batch([Encoding([101, 102], [1, 1], [0, 2])])


def test_encoding_longer_than_the_position_limit(backend):
    with pytest.raises(EncodingError, match="input 0 has 513 tokens, above this model's limit of 512"):
        backend.embed_batch([Encoding.from_ids([100] * 513)])
    with pytest.raises(EncodingError, match="input 1 has 600 tokens, above this model's limit of 512"):
        backend.embed_batch([Encoding.from_ids([100] * 5), Encoding.from_ids([100] * 600)])


def test_non_encoding_input(backend):
    with pytest.raises(EncodingError, match="input 1 is a list, not an Encoding"):
        backend.embed_batch([Encoding.from_ids([101, 102]), [101, 102]])


class _BrokenDriver(NumpyDriver):
    def __init__(self, mode: str):
        super().__init__()
        self.mode = mode

    def gelu_(self, x):
        if self.mode == "raise":
            raise RuntimeError("kernel exploded")
        x[...] = np.nan
        return x


@pytest.mark.parametrize(("mode", "message"), [("raise", "forward pass failed: RuntimeError: kernel exploded"),
                                               ("nan", "not finite")])
def test_forward_failures_become_backend_errors(backend, mode, message):
    broken = GenericBackend(_BrokenDriver(mode), backend.arch, False, backend.weights)
    with pytest.raises(BackendError, match=message):
        broken.embed_batch([Encoding.from_ids([101, 2000, 102])])


def test_non_finite_output_of_any_driver_is_caught(backend):
    class NaNDriver(NumpyDriver):
        def l2_normalize(self, x):
            return x * np.nan

    broken = GenericBackend(NaNDriver(), backend.arch, False, backend.weights)
    with pytest.raises(BackendError, match="non-finite embedding for input 0"):
        broken.embed_batch([Encoding.from_ids([101, 2000, 102])])


def test_zero_vector_cannot_be_normalized():
    with pytest.raises(BackendError, match="zero length"):
        NumpyDriver().l2_normalize(np.zeros((1, 4), dtype=np.float32))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        pytest.param({"kind": "cuda"}, "no CUDA device",
                     marks=pytest.mark.skipif(cuda_available(), reason="this machine has a CUDA device")),
        ({"kind": "tpu"}, "unknown backend kind 'tpu'"),
        ({"driver": "onnx"}, "no driver 'onnx' for kind 'cpu'"),
        ({"precision": "int4"}, r"precision 'int4' is not supported .* cpu/numpy: \['fp32'\]"),
        ({"device": "cuda:0", "driver": "numpy"}, "device 'cuda:0' is not available"),
        ({"device": "cuda:0"}, "device 'cuda:0' does not match kind 'cpu'"),
    ],
)
def test_unsupported_backend_requests(kwargs, message):
    with pytest.raises(BackendError, match=message):
        load_backend(**kwargs)


def test_detect_backends_gives_the_cpu_backend_when_there_is_no_gpu(monkeypatch):
    monkeypatch.setattr("vecsift.backend.loader.cuda_available", lambda: False)
    assert [b.name() for b in detect_backends()] == ["CPU (torch)"]  # torch is installed with the test extra


@pytest.mark.skipif(not cuda_available(), reason="no CUDA device on this machine")
def test_detect_backends_uses_a_real_cuda_device():
    backends = detect_backends()
    assert [b.name() for b in backends] == ["CUDA (torch)"] and backends[0].is_gpu()


def test_a_gpu_that_cannot_be_used_is_reported_and_cpu_is_used(monkeypatch):
    import torch

    monkeypatch.setattr("vecsift.backend.loader.cuda_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)  # present, but torch cannot use it
    with pytest.warns(UserWarning, match="CUDA device is present but no CUDA backend could be loaded"):
        backends = detect_backends()
    assert [b.name() for b in backends] == ["CPU (torch)"]


def test_auto_kind_in_embedder_uses_detection(monkeypatch):
    from vecsift import Embedder

    monkeypatch.setattr("vecsift.backend.loader.cuda_available", lambda: False)
    assert [b.name() for b in Embedder(kind="auto").backends] == ["CPU (torch)"]


def test_default_driver_rule(monkeypatch):
    from vecsift.backend.loader import default_driver

    assert default_driver("cuda", "fp32") == "torch" and default_driver("cpu", "bf16") == "torch"
    assert default_driver("cpu", "fp32") == "torch"
    monkeypatch.setattr("vecsift.backend.loader.torch_installed", lambda: False)
    assert default_driver("cpu", "fp32") == "numpy"


def test_without_torch_the_numpy_driver_serves_and_torch_requests_say_how_to_get_it(monkeypatch):
    monkeypatch.setattr("vecsift.backend.loader.torch_installed", lambda: False)
    assert load_backend().name() == "CPU (numpy)"
    with pytest.raises(BackendError, match=r"no driver 'torch' for kind 'cpu' \(install the torch extra"):
        load_backend(precision="bf16")


def test_import_and_default_path_work_without_torch():
    import subprocess
    import sys

    script = ("import sys; sys.modules['torch'] = None; import vecsift; e = vecsift.Embedder(); "
              "print(e.embed(['x']).shape, e.backends[0].name())")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "(1, 384) CPU (numpy)"
