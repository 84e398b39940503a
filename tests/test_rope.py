"""The fused RoPE kernel against the torch passes it replaces, and the probe that decides between them.

The Triton kernel runs for real on a CUDA machine, and here in Triton's interpreter (CPU tensors through
NumPy), so every CI run checks the kernel's arithmetic, not only the GPU run.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from texts import varied_texts
from vecsift import load_backend, load_tokenizer
from vecsift.backend.driver.torch import TorchDriver
from vecsift.backend.driver.torch.rope import FusedRope, TorchRope, choose_rope, triton_kernel

triton = pytest.importorskip("triton", reason="Triton is not installed (it comes with torch's CUDA builds)")

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
PLACES = ["interpreter", pytest.param("cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(),
                                                                      reason="no CUDA device on this machine"))]


@pytest.fixture
def fused_route(request, monkeypatch):
    """(device, route) for the parametrized place: the compiled kernel on CUDA, Triton's interpreter on CPU."""
    def make(place: str, dtype: torch.dtype) -> tuple[torch.device, FusedRope]:
        if place == "interpreter":
            monkeypatch.setenv("TRITON_INTERPRET", "1")  # read when the kernel is decorated
            device, route = torch.device("cpu"), choose_rope(torch.device("cpu"), dtype, triton_kernel(), True)
        else:
            device, route = torch.device("cuda"), choose_rope(torch.device("cuda"), dtype)
        assert isinstance(route, FusedRope), route.label
        return device, route

    return make


def qkv_and_tables(device: torch.device, dtype: torch.dtype, tokens: int = 37, heads: int = 12, head_dim: int = 64):
    """A fused projection's output (q, k, v side by side) and gathered cos/sin tables, as a model makes them."""
    generator = torch.Generator().manual_seed(1)
    qkv = torch.randn(tokens, 3 * heads * head_dim, generator=generator).mul_(3).to(device, dtype)
    angles = torch.rand(tokens, head_dim // 2, generator=generator) * 300
    return qkv[:, : 2 * heads * head_dim], angles.cos().to(device, dtype), angles.sin().to(device, dtype)


def rotation_terms(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, num_heads: int) -> torch.Tensor:
    """The size of the two products behind each output element: |a·cos| + |b·sin| (first halves) and
    |b·cos| + |a·sin| (second halves)."""
    first, second = x.abs().unflatten(1, (num_heads, 2, -1)).unbind(2)
    cos, sin = cos.abs()[:, None, :], sin.abs()[:, None, :]
    return torch.stack([first * cos + second * sin, second * cos + first * sin], dim=2).flatten(1)


@pytest.mark.parametrize("place", PLACES)
@pytest.mark.parametrize("precision", list(DTYPES))
def test_fused_rope_matches_the_torch_passes(fused_route, place, precision):
    """fp32: equal to the torch passes within fp32's rounding. fp16/bf16: the fused kernel computes in
    float32 and rounds once, so every element is within half an ulp (asserted: one eps, relative) of the
    exact rotation of its inputs; the torch passes round the first product too, so theirs is bounded by
    the size of the terms instead (they cancel), and the two agree within that bound."""
    dtype = DTYPES[precision]
    device, route = fused_route(place, dtype)
    x, cos, sin = qkv_and_tables(device, dtype)
    assert x.stride(0) == 3 * x.shape[1] // 2  # a strided view, as the model passes it
    got, torch_passes = route(x, cos, sin, 24), TorchRope()(x, cos, sin, 24)
    assert got.shape == x.shape and got.dtype == dtype and got.is_contiguous()
    if dtype == torch.float32:
        torch.testing.assert_close(got, torch_passes)
        return
    exact = TorchRope()(x.double(), cos.double(), sin.double(), 24)
    terms = rotation_terms(x.double(), cos.double(), sin.double(), 24)
    eps = torch.finfo(dtype).eps
    assert ((got.double() - exact).abs() <= eps * exact.abs() + 1e-6).all()
    assert ((torch_passes.double() - exact).abs() <= eps * terms).all()
    assert ((got.double() - torch_passes.double()).abs() <= 2 * eps * terms).all()


@pytest.mark.parametrize("place", PLACES)
def test_fused_rope_takes_odd_shapes(fused_route, place):
    """Head counts and head sizes that are not powers of two (masked lanes), and an empty batch."""
    device, route = fused_route(place, torch.float32)
    for tokens, heads, head_dim in ((5, 3, 24), (1, 2, 6), (0, 4, 8)):
        x, cos, sin = qkv_and_tables(device, torch.float32, tokens, heads, head_dim)
        torch.testing.assert_close(route(x, cos, sin, 2 * heads), TorchRope()(x, cos, sin, 2 * heads))


class FakeKernel:
    """Stands in for the ``@triton.jit`` function: ``kernel[grid](*args)`` runs ``launch(args)``."""

    def __init__(self, launch) -> None:
        self.launch = launch

    def __getitem__(self, grid):
        return lambda *args, **constants: self.launch(args)


def broken(args):
    raise RuntimeError("PTX .version 8.7 does not support .target sm_120")


def wrong(args):
    args[3].fill_(1.0)  # the output buffer: plausible shape, wrong numbers


@pytest.mark.parametrize(
    ("kernel", "expected"),
    [
        (None, "torch elementwise (Triton is not installed)"),
        (FakeKernel(broken), "torch elementwise (the Triton kernel failed its probe: RuntimeError: PTX"),
        (FakeKernel(wrong), "torch elementwise (the Triton kernel disagreed with it in its probe)"),
    ],
)
def test_probe_falls_back_to_the_torch_passes(monkeypatch, kernel, expected):
    """The fused kernel is used only where it compiles and agrees; otherwise the driver says why."""
    assert TorchDriver("cpu", "bf16").describe()["rope"] == "torch elementwise"  # CPU drivers never probe
    if kernel is None:
        monkeypatch.setattr("vecsift.backend.driver.torch.rope.triton_kernel", lambda: None)
    route = choose_rope(torch.device("cpu"), torch.float32, kernel, interpreted=True)
    assert isinstance(route, TorchRope) and route.label.startswith(expected)
    x, cos, sin = qkv_and_tables(torch.device("cpu"), torch.float32, 3, 2, 8)
    torch.testing.assert_close(route(x, cos, sin, 4), TorchRope()(x, cos, sin, 4))


@pytest.mark.parametrize("place", PLACES)
@pytest.mark.parametrize("precision", ["fp32", "bf16", "fp16"])
def test_modernbert_with_the_fused_rope_gives_the_same_vectors(fused_route, make_modernbert, place, precision):
    """Whole-model parity of the fused route with the torch passes: max |Δ| ≤ 1e-5 in fp32. In fp16/bf16 the
    two round differently (bf16's unit roundoff alone is 3.9e-3), so there: min cosine ≥ 0.9999 between
    them, and the fused route at most as far from the fp32 vectors as the torch passes are (+25%)."""
    if place == "interpreter" and precision == "fp16":
        pytest.skip("the torch driver runs fp16 on CUDA only")
    device, route = fused_route(place, DTYPES[precision])
    directory = str(make_modernbert(every=2, window=16))
    encodings = load_tokenizer(directory).encode(varied_texts(12, seed=4), max_tokens=64)
    backend = load_backend(device.type, directory, driver="torch", precision=precision)
    backend.driver.rope_route = TorchRope()
    torch_passes = backend.embed_batch(encodings)
    backend.driver.rope_route = route
    fused = backend.embed_batch(encodings)
    if precision == "fp32":
        assert np.abs(fused - torch_passes).max() <= 1e-5
        return
    fp32 = load_backend(device.type, directory, driver="torch").embed_batch(encodings)
    assert (fused * torch_passes).sum(1).min() >= 0.9999
    assert np.abs(fused - fp32).max() <= 1.25 * np.abs(torch_passes - fp32).max()
