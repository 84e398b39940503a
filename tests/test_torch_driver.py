"""TorchDriver: the same architectures on torch, in fp32, bf16 and int8 (CPU), CUDA when present."""

from __future__ import annotations

from itertools import pairwise

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from references import reference_bert_vectors, reference_modernbert_hidden
from texts import varied_texts
from vecsift import Encoding, embed_distributed, load_backend, load_tokenizer
from vecsift.backend.driver.torch import TorchDriver, ops
from vecsift.backend.driver.torch.attention import (
    ATTENTION_TILE,
    SdpaAttention,
    VarlenAttention,
    attention_width,
    choose_attention,
    group_plan,
)
from vecsift.backend.loader import DEFAULT_MODEL
from vecsift.backend.token_batch import TokenBatch
from vecsift.errors import BackendError
from vecsift.hardware import has_amx_int8

QUERIES = [
    "parse command line arguments", "read a csv file row by row", "compute the md5 hash of data",
    "format a date as a string", "copy a file preserving metadata", "walk a directory tree recursively",
    "join path components", "encode bytes as base64", "decode json text into objects",
    "serialize objects to json", "open a temporary file", "spawn a subprocess and wait for it",
    "send an http request", "parse a url into components", "quote special characters in a url",
    "compress data with gzip", "extract files from a zip archive", "read a tar archive",
    "create a thread pool", "lock shared state between threads", "schedule a function call later",
    "log a warning message", "configure logging handlers", "generate random numbers",
    "shuffle a list in place", "compute the square root", "round a decimal number",
    "represent fractions exactly", "sort items with a key function", "binary search a sorted list",
    "priority queue with a heap", "count occurrences of items", "ordered dictionary", "named tuple fields",
    "deep copy an object", "pickle an object to bytes", "compare two sequences and show differences",
    "wrap text to a fixed width", "regular expression matching", "split a string by whitespace like a shell",
    "read configuration from an ini file", "parse email messages", "send mail over smtp",
    "measure elapsed time", "profile function calls", "inspect the signature of a function",
    "import a module by name", "abstract base class with abstract methods",
    "context manager that suppresses errors",
    "iterate over pairs of items", "cache the results of a function", "handle unix signals",
    "get environment variables", "tokenize python source code", "disassemble python bytecode",
]


@pytest.fixture(scope="module")
def torch_fp32():
    return load_backend("cpu", driver="torch", precision="fp32")


@pytest.fixture(scope="module")
def fp32_reference(backend, tokenizer):
    texts = varied_texts(220)
    return texts, backend.embed_batch(tokenizer.encode(texts))


def test_names_and_contract(torch_fp32):
    assert torch_fp32.name() == "CPU (torch)" and not torch_fp32.is_gpu() and torch_fp32.supports_clone()
    assert load_backend("cpu", precision="bf16").name() == "CPU (torch, bf16)"
    assert torch_fp32.embed_batch([]).shape == (0, 384)


@pytest.mark.slow
def test_fp32_matches_sentence_transformers_and_numpy(torch_fp32, tokenizer, fp32_reference, bundled_dir):
    from sentence_transformers import SentenceTransformer

    texts, numpy_vectors = fp32_reference
    ours = embed_distributed(tokenizer.encode(texts), [torch_fp32], batch_size=32)
    reference = SentenceTransformer(str(bundled_dir), device="cpu").encode(texts, normalize_embeddings=True)
    assert (ours * reference).sum(1).min() >= 0.99999
    assert np.abs(ours - numpy_vectors).max() <= 1e-5


def test_clones_share_the_memory_map(torch_fp32, tokenizer):
    clone = torch_fp32.clone_backend()
    # Embeddings are views of the memory map (the clone-memory test in test_backend.py covers both drivers).
    assert np.shares_memory(torch_fp32.arch.word_embeddings.numpy(), torch_fp32.weights._map)
    encodings = tokenizer.encode(["same result from a clone"])
    np.testing.assert_array_equal(clone.embed_batch(encodings), torch_fp32.embed_batch(encodings))


def test_bf16_stays_close_to_fp32(tokenizer, fp32_reference):
    texts, fp32 = fp32_reference
    bf16 = embed_distributed(tokenizer.encode(texts), [load_backend("cpu", precision="bf16")])
    cosines = (bf16 * fp32).sum(1)
    assert bf16.dtype == np.float32 and np.allclose(np.linalg.norm(bf16, axis=1), 1, atol=1e-5)
    assert cosines.min() >= 0.996 and cosines.mean() >= 0.999


@pytest.mark.slow
def test_int8_keeps_retrieval_quality(backend, tokenizer, fp32_reference):
    from vecsift.stdlib_corpus import stdlib_chunks

    texts, fp32 = fp32_reference
    int8_backend = load_backend("cpu", precision="int8")
    assert int8_backend.name() == "CPU (torch, int8)"
    int8 = embed_distributed(tokenizer.encode(texts), [int8_backend])
    cosines = (int8 * fp32).sum(1)
    # the worst is the empty text ([CLS] [SEP]): 0.978-0.984, as the attention kernel's blocking changes
    assert int8.dtype == np.float32 and cosines.min() >= 0.975 and cosines.mean() >= 0.995

    chunks = stdlib_chunks(1000)
    assert len(QUERIES) >= 50
    corpus = {name: embed_distributed(tokenizer.encode(chunks), [b]) for name, b in
              (("fp32", backend), ("int8", int8_backend))}
    queries = {name: embed_distributed(tokenizer.encode(QUERIES), [b]) for name, b in
               (("fp32", backend), ("int8", int8_backend))}
    top = {name: np.argsort(-(queries[name] @ corpus[name].T), axis=1)[:, :10] for name in corpus}
    overlap = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(top["fp32"], top["int8"], strict=True)])
    assert overlap >= 0.9, overlap


def test_per_token_quantization_stays_in_range():
    """bf16 rounding of ``x / scale`` must never reach 128, which would wrap around to -128 in int8."""
    from vecsift.backend.driver.torch.ops import quantize_per_token

    generator = torch.Generator().manual_seed(0)
    rows = torch.randn(4096, 384, generator=generator) * torch.logspace(-6, 6, 4096)[:, None]
    rows[:8] = rows[:8, :1]  # rows whose every value is the row's maximum
    rows[8] = 0.0  # an all-zero row (the padding-free batch never has one, but it must not be NaN)
    # Within half a step of the true value, plus bf16's own rounding of x / scale (2^-9 of 127 steps).
    for dtype, steps in ((torch.bfloat16, 0.5 + 127 * 2**-9 + 0.01), (torch.float32, 0.501)):
        x = rows.to(dtype)
        values, scale = quantize_per_token(x)
        assert values.dtype == torch.int8 and int(values.abs().max()) <= 127
        assert bool((values[8] == 0).all()) and bool(torch.isfinite(scale).all())
        error = (values.float() * scale.float() - x.float()).abs()
        assert bool((error <= steps * scale.float()).all())


@pytest.mark.parametrize(("precision", "onednn", "int8_kernel"), [
    ("fp32", True, None), ("bf16", True, None), ("bf16", False, None), ("int8", True, "onednn"),
    ("int8", True, "dequantized"), ("int8", False, "dequantized")])
def test_fused_linear_gelu_matches_the_unfused_one(monkeypatch, precision, onednn, int8_kernel):
    """The bf16 path fuses bias and GELU into oneDNN's GEMM (F.linear where torch lacks it); every
    precision must equal gelu(linear)."""
    monkeypatch.setattr(ops, "ONEDNN_LINEAR", onednn)
    driver = TorchDriver("cpu", precision, int8_kernel)
    bf16_linear = precision == "bf16" or (int8_kernel == "dequantized" and driver.dtype == torch.bfloat16)
    assert driver.fused_linear == (onednn and bf16_linear)
    generator = torch.Generator().manual_seed(1)
    weight = torch.randn(96, 48, generator=generator) * 0.2
    bias = driver.weight(torch.randn(96, generator=generator).numpy())
    x = torch.randn(300, 48, generator=generator).to(driver.dtype)
    w = driver.linear_weight(weight.numpy())
    fused = driver.linear_gelu(x, w, bias).float()
    unfused = torch.nn.functional.gelu(driver.linear(x, w, bias).float())
    exact = torch.nn.functional.gelu(x.float() @ weight.T + bias.float())
    tolerance = {"fp32": 1e-5, "bf16": 0.05, "int8": 0.05}[precision]
    assert fused.dtype == torch.float32 and (fused - unfused).abs().max() <= tolerance
    assert (fused - exact).abs().max() <= 4 * tolerance


@pytest.mark.skipif(not (ops.ONEDNN_LINEAR and ops.ONEDNN_PREPACK), reason="this torch cannot pack oneDNN weights")
@pytest.mark.parametrize("gelu", [False, True])
def test_packed_linear_weights_give_the_plain_weights_rows(gelu):
    """A bf16 driver's linear weights are packed for oneDNN once at load (not reordered on every call), and
    its GEMMs give the same rows as with the plain weight, bit for bit, at any row count."""
    driver = TorchDriver("cpu", "bf16")
    generator = torch.Generator().manual_seed(2)
    weight = torch.randn(96, 48, generator=generator) * 0.2
    packed = driver.linear_weight(weight.numpy())
    assert packed.is_mkldnn and tuple(packed.shape) == (96, 48)
    plain = weight.bfloat16()
    bias = torch.randn(96, generator=generator).bfloat16()
    for rows in (1, 16, 300, 4096):
        x = torch.randn(rows, 48, generator=generator).bfloat16()
        assert torch.equal(ops.onednn_linear(x, packed, bias, gelu), ops.onednn_linear(x, plain, bias, gelu))


@pytest.mark.skipif(not (ops.ONEDNN_LINEAR and ops.ONEDNN_PREPACK), reason="this torch cannot pack oneDNN weights")
def test_clones_share_the_packed_weights_and_any_worker_count_gives_the_same_vectors(tokenizer):
    """Worker threads run clones that share one set of packed weights at once: the vectors are the same, bit
    for bit, whatever the worker count (the seed's rule), as they are with the weights plain."""
    backend = load_backend("cpu", driver="torch", precision="bf16")
    assert backend.driver.fused_linear and backend.clone_backend().weights is backend.weights
    encodings = tokenizer.encode(varied_texts(90, seed=3))
    one = embed_distributed(encodings, [backend], batch_size=8, workers=1)
    np.testing.assert_array_equal(embed_distributed(encodings, [backend], batch_size=8, workers=3), one)


def test_linear_weights_stay_plain_where_onednn_cannot_pack_them(monkeypatch):
    monkeypatch.setattr(ops, "ONEDNN_PREPACK", False)
    weight = np.ones((8, 4), dtype=np.float32)
    assert not TorchDriver("cpu", "bf16").linear_weight(weight).is_mkldnn
    assert not TorchDriver("cpu", "fp32").linear_weight(weight).is_mkldnn  # fp32 runs MKL's GEMM: never packed


def test_gemm_row_counts_are_rounded_to_few_sizes():
    """oneDNN compiles a GEMM per shape: a batch's token count is rounded up, by at most 1/16, to one of
    16 sizes per power of two, so a model's layer shapes stay inside oneDNN's cache of 1024 primitives."""
    sizes = [ops.bucket_rows(rows) for rows in range(1, 16385)]
    assert all(size >= rows for rows, size in enumerate(sizes, 1))
    assert all(size - rows <= max(15, rows // 16) for rows, size in enumerate(sizes, 1))
    assert sizes == sorted(sizes) and all(ops.bucket_rows(size) == size for size in sizes)
    assert len(set(sizes)) * 4 <= 1024  # MiniLM's four linear shapes


def test_grown_rows_views_a_larger_buffer_and_copies_otherwise():
    buffer = torch.arange(48.0).view(12, 4)
    head = buffer[:5]
    grown = ops.grown_rows(head, 8)
    assert grown.data_ptr() == buffer.data_ptr() and torch.equal(grown, buffer[:8])  # no copy
    alone = torch.arange(20.0).view(5, 4)
    copied = ops.grown_rows(alone, 8)
    assert copied.data_ptr() != alone.data_ptr() and torch.equal(copied[:5], alone)
    assert not copied[5:].any()


@pytest.mark.skipif(not ops.ONEDNN_LINEAR, reason="this torch build lacks oneDNN's linear")
@pytest.mark.parametrize(("precision", "int8_kernel"), [("bf16", None), ("int8", "onednn"), ("int8", "dequantized")])
def test_onednn_gemms_see_only_rounded_row_counts_and_the_same_rows(monkeypatch, tokenizer, precision, int8_kernel):
    if int8_kernel == "onednn" and not (ops.ONEDNN_INT8 and has_amx_int8()):
        pytest.skip("oneDNN's int8 GEMM runs here only with AMX int8 tiles")
    monkeypatch.setattr(ops, "has_amx_int8", lambda: int8_kernel == "onednn")
    backend = load_backend("cpu", driver="torch", precision=precision)
    assert backend.driver.int8_kernel == int8_kernel
    if not backend.driver.bucket_gemm_rows:
        pytest.skip("the GEMMs here are not oneDNN's (dequantized int8 runs fp32 where bf16 is not faster)")
    seen: list[int] = []
    for name in ("onednn_linear", "int8_linear"):
        original = getattr(ops, name)
        monkeypatch.setattr(ops, name, lambda x, *rest, _run=original: seen.append(len(x)) or _run(x, *rest))
    encodings = tokenizer.encode(varied_texts(37))  # 37 inputs of mixed lengths: a row count off the sizes
    assert ops.bucket_rows(sum(map(len, encodings))) != sum(map(len, encodings))
    bucketed = backend.embed_batch(encodings)
    assert seen and all(ops.bucket_rows(rows) == rows for rows in seen)
    backend.driver.bucket_gemm_rows = False  # the exact row counts
    exact = backend.embed_batch(encodings)
    assert any(ops.bucket_rows(rows) != rows for rows in seen)
    np.testing.assert_allclose(bucketed, exact, atol=2e-3)


def test_int8_kernel_follows_the_cpu(monkeypatch):
    """oneDNN's int8 GEMM only with AMX int8 tiles: without them it is ~100x slower than fp32 and would
    hang the test suite, so int8 weights are dequantized at load there."""
    monkeypatch.setattr(ops, "has_amx_int8", lambda: True)
    assert TorchDriver("cpu", "int8").int8_kernel == "onednn"
    monkeypatch.setattr(ops, "has_amx_int8", lambda: False)
    driver = TorchDriver("cpu", "int8")
    assert driver.int8_kernel == "dequantized" and driver.clone().int8_kernel == "dequantized"
    assert "dequantized" in driver.describe()["int8_kernel"]
    monkeypatch.setattr(ops, "has_amx_int8", lambda: True)
    monkeypatch.setattr(ops, "ONEDNN_INT8", False)  # a torch build without the operator
    assert TorchDriver("cpu", "int8").int8_kernel == "dequantized"
    with pytest.raises(BackendError, match="needs torch's oneDNN quantized linear"):
        TorchDriver("cpu", "int8", int8_kernel="onednn")
    with pytest.raises(BackendError, match="unknown int8 kernel"):
        TorchDriver("cpu", "int8", int8_kernel="vnni")


def test_dequantized_int8_runs_in_the_faster_of_bf16_and_fp32(monkeypatch):
    """Without AMX int8 the GEMMs run in bf16 only where bf16's beat fp32's (measured): AVX-512 BF16 alone
    is not always faster (oneDNN capped below AMX on a Xeon: ~0.55× fp32), and int8 must never be slower
    than fp32."""
    monkeypatch.setattr(ops, "has_amx_int8", lambda: False)
    monkeypatch.setattr(ops, "has_fast_bf16", lambda: True)
    monkeypatch.setattr(ops, "bf16_gemm_speedup", lambda: 0.55)
    slow = TorchDriver("cpu", "int8")
    assert slow.dtype == torch.float32 and not slow.fused_linear and slow.clone().dtype == torch.float32
    assert "dequantized to float32" in slow.describe()["int8_kernel"]
    monkeypatch.setattr(ops, "bf16_gemm_speedup", lambda: 3.0)
    assert TorchDriver("cpu", "int8").dtype == (torch.bfloat16 if ops.ONEDNN_BF16 else torch.float32)
    monkeypatch.setattr(ops, "has_fast_bf16", lambda: False)  # bf16 emulated: not even measured
    monkeypatch.setattr(ops, "bf16_gemm_speedup", lambda: pytest.fail("measured without bf16 hardware"))
    assert TorchDriver("cpu", "int8").dtype == torch.float32


def test_the_bf16_speedup_is_measured_once_per_process():
    first = ops.bf16_gemm_speedup()
    assert first > 0 and np.isfinite(first) and ops.bf16_gemm_speedup() == first


def test_dequantized_int8_keeps_quality_and_speed(monkeypatch, tokenizer, fp32_reference):
    """The kernel a CPU without AMX int8 gets: close to fp32, and not slower than it (counted in forward
    passes of the same size rather than timed: both run the same GEMMs, in bf16 or fp32)."""
    monkeypatch.setattr(ops, "has_amx_int8", lambda: False)
    texts, fp32 = fp32_reference
    backend = load_backend("cpu", precision="int8")
    assert "dequantized" in backend.describe()["int8_kernel"]
    int8 = embed_distributed(tokenizer.encode(texts), [backend])
    cosines = (int8 * fp32).sum(1)
    assert int8.dtype == np.float32 and cosines.min() >= 0.98 and cosines.mean() >= 0.995
    assert not any(isinstance(w, ops.Int8Weight) for w in vars(backend.arch.layers[0]).values())


@pytest.mark.parametrize("precision", ["bf16", "int8"])
def test_modernbert_in_reduced_precision_stays_close(make_modernbert, precision):
    directory = make_modernbert(every=2, window=16)
    encodings = load_tokenizer(str(directory)).encode(varied_texts(40, seed=5))
    fp32 = load_backend("cpu", str(directory), driver="torch").embed_batch(encodings)
    reduced = load_backend("cpu", str(directory), precision=precision).embed_batch(encodings)
    assert reduced.dtype == np.float32 and (reduced * fp32).sum(1).min() >= 0.99


@pytest.mark.parametrize("pooling", ["cls", "mean", "max"])
def test_random_bert_matches_transformers(make_bert, pooling):
    directory = make_bert(pooling=pooling, hidden=48, heads=3, layers=2, intermediate=96)
    encodings = load_tokenizer(str(directory)).encode(varied_texts(30, seed=9))
    ours = load_backend("cpu", str(directory), driver="torch").embed_batch(encodings)
    assert np.abs(ours - reference_bert_vectors(directory, encodings, pooling)).max() <= 1e-5


def test_modernbert_runs_on_the_torch_driver(make_modernbert):
    directory = make_modernbert(every=2, window=16)
    encodings = load_tokenizer(str(directory)).encode(["short", "word " * 60, "a longer one " * 30])
    backend = load_backend("cpu", str(directory), driver="torch")
    reference, mask = reference_modernbert_hidden(directory, encodings)
    ours = backend.driver.to_numpy(backend.arch.hidden_states(backend.driver, TokenBatch.from_encodings(encodings)))
    assert np.abs(ours - reference[mask == 1]).max() <= 1e-4
    numpy_backend = load_backend("cpu", str(directory), driver="numpy")
    assert np.abs(backend.embed_batch(encodings) - numpy_backend.embed_batch(encodings)).max() <= 1e-5


def test_architectures_accept_batches_staged_as_tensors(torch_fp32, make_modernbert, tokenizer):
    """What a GPU driver's upload() hands the architectures: token arrays already as tensors."""
    import dataclasses

    for backend in (torch_fp32, load_backend("cpu", str(make_modernbert()), driver="torch")):
        batch = TokenBatch.from_encodings(tokenizer.encode(["staged ids", "a second, longer input " * 5]))
        staged = dataclasses.replace(batch, **{f: torch.from_numpy(getattr(batch, f).copy()) for f in
                                               ("input_ids", "position_ids", "token_type_ids")})
        np.testing.assert_array_equal(backend.arch.forward(backend.driver, staged),
                                      backend.arch.forward(backend.driver, batch))
    assert torch_fp32.driver.upload(batch) is batch  # CPU: nothing to stage


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"precision": "fp16"},
         r"precision 'fp16' is not supported by the torch driver on cpu; supported: .*cuda/torch"),
        ({"precision": "int4"}, "precision 'int4' is not supported"),
        ({"driver": "numpy", "precision": "bf16"}, "precision 'bf16' is not supported by the numpy driver"),
        ({"driver": "torch", "device": "cuda:0"}, "does not match kind 'cpu'"),
        ({"driver": "torch", "device": "bogus"}, "not a valid torch device"),
    ],
)
def test_unsupported_combinations_list_the_supported_ones(kwargs, message):
    with pytest.raises(BackendError, match=message):
        load_backend("cpu", **kwargs)


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a CUDA device")
def test_cuda_without_a_gpu_says_why():
    with pytest.raises(BackendError, match="no CUDA device"):
        load_backend(kind="cuda")


def reference_varlen(q, k, v, cu_seq_q, cu_seq_k, max_q, max_k, window_size=(-1, -1)):
    """What torch's varlen flash attention computes, per input with SDPA: the contract the GPU route relies on."""
    assert q.shape[1:] == k.shape[1:] == v.shape[1:] and cu_seq_q.dtype == torch.int32
    assert torch.equal(cu_seq_q, cu_seq_k)
    bounds = cu_seq_q.tolist()
    assert max_q == max_k == max(b - a for a, b in pairwise(bounds))
    out = torch.empty_like(q)
    for a, b in pairwise(bounds):
        offset = torch.arange(b - a)[None, :] - torch.arange(b - a)[:, None]  # key minus query position
        left, right = (x if x >= 0 else b - a for x in window_size)
        mask = (offset >= -left) & (offset <= right)
        out[a:b] = F.scaled_dot_product_attention(*(x[a:b].transpose(0, 1) for x in (q, k, v)),
                                                  attn_mask=mask).transpose(0, 1)
    return out


def failing_varlen(*args, **kwargs):
    raise RuntimeError("FlashAttention only supports Ampere GPUs or newer.")


def scaled_varlen(*args, **kwargs):
    return reference_varlen(*args, **kwargs) * 1.5


@pytest.mark.parametrize(
    ("kernel", "window", "expected"),
    [
        (None, False, "sdpa (this torch has no varlen flash attention)"),
        (failing_varlen, True, "sdpa (varlen flash attention failed its probe: FlashAttention only supports Ampere"),
        (scaled_varlen, True, "sdpa (varlen flash attention disagreed with SDPA in its probe)"),
        (reference_varlen, False, "varlen flash (global layers)"),
        (reference_varlen, True, "varlen flash (sliding window too)"),
    ],
)
def test_varlen_probe_decides_the_attention_route(kernel, window, expected):
    """A GPU driver uses varlen flash attention only if torch has it and it agrees with SDPA on a probe;
    otherwise it says why in ``describe()`` (``vecsift info``) and uses SDPA."""
    grouped = "sdpa (inputs grouped in steps of 16 tokens)"
    assert TorchDriver("cpu", "bf16").describe()["attention"] == grouped  # no probe
    assert TorchDriver("cpu", "fp32").describe()["attention"] == "sdpa"
    route = choose_attention(torch.device("cpu"), torch.bfloat16, found=(kernel, window))  # the probe runs here
    assert route.label.startswith(expected)
    if expected.startswith("varlen"):
        assert isinstance(route, VarlenAttention) and route.kernel is kernel and route.supports_window == window
    else:
        assert isinstance(route, SdpaAttention)


@pytest.mark.parametrize("model", ["bundled", "modernbert"])
@pytest.mark.parametrize("route", ["varlen", "padded"])
def test_gpu_attention_routes_give_the_cpu_result(make_modernbert, model, route):
    """The CUDA-only routes, run here on the CPU: packed varlen attention (its kernel stood in for by
    per-input SDPA) and one padded SDPA for a batch of many lengths (what a GPU does instead of a loop)."""
    directory = str(make_modernbert(every=2, window=16)) if model == "modernbert" else DEFAULT_MODEL
    encodings = load_tokenizer(directory).encode(varied_texts(40, seed=2), max_tokens=200)
    want = load_backend("cpu", directory, driver="torch").embed_batch(encodings)
    backend = load_backend("cpu", directory, driver="torch")
    padded = SdpaAttention(torch.device("cpu"), pad_many_runs=True)  # what a GPU driver's SDPA route does
    backend.driver.attention_route = VarlenAttention(reference_varlen, True, padded) if route == "varlen" else padded
    assert len(TokenBatch.from_encodings(encodings).equal_length_runs()) > 10
    assert np.abs(backend.embed_batch(encodings) - want).max() <= 1e-5


@pytest.mark.parametrize("model", ["bundled", "modernbert"])
@pytest.mark.parametrize("order", ["length-sorted", "as given", "one input", "one length"])
def test_grouped_runs_give_the_per_run_result(make_modernbert, model, order):
    """The CPU bf16 route (inputs grouped by length in steps of 16, padded together under a key mask), forced
    in fp32 so the arithmetic can be compared exactly: the vectors of the one-SDPA-per-run route, and every
    row in one group. A batch of one input, or of one length, is padded too when its width is not a step."""
    directory = str(make_modernbert(every=2, window=16)) if model == "modernbert" else DEFAULT_MODEL
    encodings = load_tokenizer(directory).encode(varied_texts(40, seed=3), max_tokens=120)
    if order == "length-sorted":
        encodings.sort(key=len)
    elif order == "one input":
        encodings = [next(e for e in encodings if attention_width(len(e)) != len(e))]
    elif order == "one length":
        encodings = [e for e in encodings if len(e) == len(encodings[0])] * 3
    backend = load_backend("cpu", directory, driver="torch")
    want = backend.embed_batch(encodings)
    backend.driver.attention_route = SdpaAttention(torch.device("cpu"), pad_many_runs=False, group_runs=True)
    assert np.abs(backend.embed_batch(encodings) - want).max() <= 1e-5
    batch = TokenBatch.from_encodings(encodings)
    groups = group_plan(batch)
    assert [g.start for g in groups] == [0, *(g.end for g in groups[:-1])] and groups[-1].end == batch.total_tokens
    if order == "length-sorted":
        assert len(groups) < len(batch.equal_length_runs()) / 3
    for g in groups:
        lengths = np.diff(batch.cu_seqlens)[np.searchsorted(batch.cu_seqlens, g.start):][: g.count]
        assert g.width == attention_width(int(lengths.max()))
        assert len(set(((lengths - 1) // ATTENTION_TILE).tolist())) == 1  # one step of 16
        assert (g.gather is None) == bool((lengths == g.width).all())
        assert g.gather is None or (len(g.real) == g.end - g.start and int(g.mask.sum()) == g.end - g.start)


@pytest.mark.parametrize(("longest", "width"), [(1, 1), (4, 4), (5, 16), (12, 16), (16, 16), (17, 17), (20, 20),
                                                (21, 32), (30, 32), (32, 32), (36, 36), (37, 48), (250, 256),
                                                (256, 256), (259, 259)])
def test_attention_width_is_a_step_of_16_or_at_most_4_tokens_past_one(longest, width):
    assert attention_width(longest) == width


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device on this machine")
@pytest.mark.parametrize("precision", ["fp32", "bf16", "fp16"])
def test_cuda_backend(tokenizer, fp32_reference, precision):
    texts, fp32 = fp32_reference
    cuda = load_backend(kind="cuda", precision=precision)
    assert cuda.is_gpu() and not cuda.supports_clone() and cuda.name().startswith("CUDA (torch")
    vectors = embed_distributed(tokenizer.encode(texts), [cuda])
    cosines = (vectors * fp32).sum(1)
    assert cosines.min() >= (0.99999 if precision == "fp32" else 0.996)


def with_padding(encodings, pad: int = 3):
    """The same inputs with ``pad`` masked-out tokens appended: batches no longer dense, so attention
    takes the padded path with a key mask; the embeddings must not change."""
    return [Encoding(np.concatenate([e.input_ids, np.zeros(pad, dtype=np.int64)]),
                     np.concatenate([e.attention_mask, np.zeros(pad, dtype=np.int64)]),
                     np.concatenate([e.token_type_ids, np.zeros(pad, dtype=np.int64)])) for e in encodings]


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device on this machine")
def test_cuda_masked_inputs_and_sharing_with_cpu(tokenizer, fp32_reference):
    """Padded (masked) inputs on CUDA, and one run split between the CUDA backend and CPU workers."""
    texts, fp32 = fp32_reference
    cuda = load_backend(kind="cuda", precision="fp32")
    masked = cuda.embed_batch(with_padding(tokenizer.encode(texts[:40])))
    assert (masked * fp32[:40]).sum(1).min() >= 0.99999
    shared = embed_distributed(tokenizer.encode(texts), [cuda, load_backend("cpu", driver="numpy")], batch_size=8)
    assert (shared * fp32).sum(1).min() >= 0.99999


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device on this machine")
@pytest.mark.parametrize("precision", ["fp32", "bf16", "fp16"])
def test_cuda_modernbert(make_modernbert, precision):
    """ModernBERT on CUDA against transformers (fp32: per-token hidden states) and against CPU fp32,
    with sequences longer than the sliding window, dense and masked."""
    directory = make_modernbert(every=2, window=16)
    encodings = load_tokenizer(str(directory)).encode(varied_texts(60, seed=3), max_tokens=500)
    cuda = load_backend(kind="cuda", model=str(directory), precision=precision)
    assert cuda.name() == "CUDA (torch)" if precision == "fp32" else cuda.name() == f"CUDA (torch, {precision})"
    cpu = load_backend("cpu", str(directory), driver="torch").embed_batch(encodings)
    for batch in (encodings, with_padding(encodings)):
        vectors = cuda.embed_batch(batch)
        assert vectors.dtype == np.float32
        assert (vectors * cpu).sum(1).min() >= (0.99999 if precision == "fp32" else 0.99)
    if precision == "fp32":
        reference, mask = reference_modernbert_hidden(directory, encodings[:8])
        hidden = cuda.arch.hidden_states(cuda.driver, cuda.driver.upload(TokenBatch.from_encodings(encodings[:8])))
        assert np.abs(cuda.driver.to_numpy(hidden) - reference[mask == 1]).max() <= 1e-4
