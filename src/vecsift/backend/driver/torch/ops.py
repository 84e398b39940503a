"""What this torch build and CPU offer the torch driver (oneDNN probes), and the int8 arithmetic.

int8 (CPU) is dynamic quantization of the linear layers: weights int8 per output channel, activations int8
per token (quantized on the fly), multiplied by oneDNN's quantized linear on AMX int8 tiles (int32
accumulation) and rescaled. Without AMX int8 that GEMM runs ~100× slower than fp32 (an AMD EPYC with
AVX-512 VNNI: 3.5 s for one 10-token text), so there the int8 weights are dequantized once at load and the
linear layers run in the activation dtype: int8's rounding, at the speed of bf16 where its GEMMs are faster
than fp32's (measured once per process: AVX-512 BF16 alone may not be), else of fp32. Per-tensor activation scales, as
in torch's ``quantized.linear_dynamic``, are cheaper but cost too much accuracy on outlier tokens (min
cosine 0.946–0.971 against 0.997 per token).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache

import numpy as np
import torch

from vecsift.backend.precision import BF16_MIN_SPEEDUP
from vecsift.hardware import has_amx_int8, has_fast_bf16


def has_onednn_op(namespace: str, name: str) -> bool:
    """Whether this torch build has oneDNN and the operator ``torch.ops.<namespace>.<name>``."""
    return torch.backends.mkldnn.is_available() and hasattr(getattr(torch.ops, namespace), name)


#: oneDNN's linear: GEMM, bias and GELU in one pass over the output, on AMX tiles; the CPU bf16 path
#: whenever this torch build has it (``F.linear`` in bf16 is ~20% slower; in fp32 MKL's is as fast)
ONEDNN_LINEAR = has_onednn_op("mkldnn", "_linear_pointwise")
#: oneDNN's weight prepacking for that linear (what torch.compile does on the CPU)
ONEDNN_PREPACK = has_onednn_op("mkldnn", "_reorder_linear_weight")
#: the int8 path's GEMM: oneDNN's quantized linear (s8 activations × s8 weights)
ONEDNN_INT8 = has_onednn_op("onednn", "qlinear_pointwise")
#: how int8 linear layers run: oneDNN's quantized GEMM, or int8 weights dequantized at load (see above)
INT8_KERNELS = ("onednn", "dequantized")
#: whether oneDNN runs bf16 here at all (natively or emulated)
ONEDNN_BF16 = has_onednn_op("mkldnn", "_is_mkldnn_bf16_supported") and torch.ops.mkldnn._is_mkldnn_bf16_supported()
#: activation scales are amax/127 enlarged by this much, so that rounding of ``x / scale`` in bf16 can
#: never reach 128 (which would wrap around in int8) and no clamp pass is needed
_QUANT_MARGIN = 1 + 2**-6


@dataclass(frozen=True)
class Int8Weight:
    """A linear weight quantized per output channel: ``weight ≈ values * scale[:, None]``."""

    packed: torch.Tensor  # the int8 values, (out, in), prepacked by oneDNN for its quantized linear
    scale: torch.Tensor  # (out,) float32
    zero_points: torch.Tensor  # (out,) int64 zeros: the weights are symmetric


def default_int8_kernel() -> str:
    """oneDNN's quantized linear where the CPU has AMX int8 tiles, dequantized weights elsewhere."""
    return "onednn" if ONEDNN_INT8 and has_amx_int8() else "dequantized"


@cache
def bf16_gemm_speedup() -> float:
    """How many times faster this CPU runs MiniLM's FFN GEMM in bf16 than in fp32 (best of five each, with
    the threads torch has): ~9 with AMX, ~3 with an AMD EPYC's AVX-512 BF16, below 1 where bf16 is emulated
    or oneDNN is capped below its bf16 kernels. About 0.1 s, once per process."""
    if not ONEDNN_BF16:
        return 0.0
    generator = torch.Generator().manual_seed(0)
    x, weight = torch.randn(1024, 384, generator=generator), torch.randn(1536, 384, generator=generator)
    x16, weight16 = x.bfloat16(), weight.bfloat16()
    linear16 = ((lambda: onednn_linear(x16, weight16, None, gelu=False)) if ONEDNN_LINEAR  # the driver's bf16 GEMM
                else (lambda: torch.nn.functional.linear(x16, weight16)))

    def best(gemm: Callable[[], torch.Tensor]) -> float:
        gemm()  # warm-up: oneDNN builds its kernel on the first call
        times = []
        for _ in range(5):
            started = time.perf_counter()
            gemm()
            times.append(time.perf_counter() - started)
        return min(times)

    return best(lambda: torch.nn.functional.linear(x, weight)) / best(linear16)


def int8_activations(kernel: str) -> torch.dtype:
    """The dtype int8's activations (and, dequantized, its GEMMs) run in: bf16 on oneDNN's quantized path
    (AMX), and dequantized where bf16 is in hardware and its GEMMs beat fp32's by
    :data:`~vecsift.backend.precision.BF16_MIN_SPEEDUP`; fp32 otherwise, so int8 is never slower than fp32."""
    if not ONEDNN_BF16:
        return torch.float32
    if kernel == "onednn":
        return torch.bfloat16
    fast = has_fast_bf16() and bf16_gemm_speedup() >= BF16_MIN_SPEEDUP
    return torch.bfloat16 if fast else torch.float32


def quantize_weight(array: np.ndarray, kernel: str, dtype: torch.dtype) -> Int8Weight | torch.Tensor:
    """A ``(out, in)`` weight rounded to int8 per output channel: prepacked for oneDNN, or (``dequantized``)
    widened back to ``dtype`` once, so the rounding is int8's and the GEMM the activation dtype's."""
    weight = torch.from_numpy(np.array(array, dtype=np.float32))
    scale = weight.abs().amax(dim=1).clamp(min=1e-12) / 127.0
    values = torch.round(weight / scale[:, None]).to(torch.int8)
    if kernel == "dequantized":
        return (values.float() * scale[:, None]).to(dtype)
    return Int8Weight(torch.ops.onednn.qlinear_prepack(values, None), scale, torch.zeros(len(scale), dtype=torch.int64))


def quantize_per_token(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Rows of ``x`` as int8 and their scales, ``x ≈ values * scale``; every value within ±127."""
    scale = x.abs().amax(dim=1, keepdim=True).clamp_(min=1e-12).mul_(_QUANT_MARGIN / 127.0)
    return torch.div(x, scale).round_().to(torch.int8), scale


def int8_linear(x: torch.Tensor, weight: Int8Weight, bias: torch.Tensor | None) -> torch.Tensor:
    """Per-token symmetric int8 activations (one scale per row keeps outlier tokens from costing the others
    their precision), int8 × int8 → int32 GEMM, rescaled to the activation dtype."""
    quantized, scale = quantize_per_token(x)
    out = torch.ops.onednn.qlinear_pointwise(quantized, 1.0, 0, weight.packed, weight.scale, weight.zero_points,
                                             None, 1.0, 0, x.dtype, "none", [], "")
    return out.mul_(scale) if bias is None else torch.addcmul(bias, out, scale)


#: the finest step :func:`bucket_rows` rounds to, and how many steps it makes of each power of two
_MIN_ROW_STEP = 16
_ROW_STEPS_PER_OCTAVE = 16


def bucket_rows(rows: int) -> int:
    """``rows`` rounded up to one of a few sizes, so that oneDNN meets few GEMM shapes.

    oneDNN builds (JIT-compiles) a primitive for each new shape, and a batch's token count is a new shape
    almost every time: ~2-4 ms per linear layer's first call with it, against ~0.8 ms for the GEMM itself
    (MiniLM's FFN, ~540 tokens, one core), so a server's batches of mixed short texts paid it on most
    batches. Rounded up to a multiple of 1/16 of the power of two below (at least 16), the padding costs at
    most 1/16 of the rows, and 16 sizes per octave keep a model's few layer shapes inside oneDNN's primitive
    cache (1024 entries) up to ~16k tokens.
    """
    if rows <= _MIN_ROW_STEP:
        return _MIN_ROW_STEP
    step = max(_MIN_ROW_STEP, (1 << (rows.bit_length() - 1)) // _ROW_STEPS_PER_OCTAVE)
    return -(-rows // step) * step


def grown_rows(x: torch.Tensor, rows: int) -> torch.Tensor:
    """``x`` (2-D) with rows added at the end, for a GEMM whose extra output rows are dropped (a GEMM's rows
    are independent, so what the extra rows hold does not matter): a view when ``x`` is the head of a
    larger buffer (the padded output of the previous linear layer), else a copy with zeros added."""
    width = x.shape[1]
    if x.is_contiguous() and x.untyped_storage().nbytes() >= (x.storage_offset() + rows * width) * x.element_size():
        return x.as_strided((rows, width), (width, 1))
    grown = x.new_empty((rows, width))
    grown[: len(x)] = x
    grown[len(x):] = 0
    return grown


def packed_linear_weight(weight: torch.Tensor, rows_hint: int) -> torch.Tensor:
    """``weight`` (``(out, in)``, bf16) packed once into oneDNN's blocked layout for :func:`onednn_linear`,
    chosen for GEMMs of about ``rows_hint`` rows (any row count works); as it is where this torch cannot.

    Given a plain weight, oneDNN reorders it into that layout on every call. Packed once, MiniLM's four
    GEMMs of a layer take 0.72x the time at 16 rows and 0.88x at ~460; a whole forward pass 0.80-0.94x for
    one short text and 0.93-0.97x for a server's batch of short texts (one core), and ``Embedder.embed`` on
    40-line chunks 0.96x (two workers); Xeon with AMX, the same outputs bit for bit.
    """
    if not ONEDNN_PREPACK or not _prepacking_agrees():
        return weight
    return torch.ops.mkldnn._reorder_linear_weight(weight, rows_hint)


@cache
def _prepacking_agrees() -> bool:
    """Whether a packed weight gives this torch build the plain weight's rows exactly (once per process)."""
    generator = torch.Generator().manual_seed(0)
    weight = torch.randn(64, 32, generator=generator).bfloat16()
    x = torch.randn(20, 32, generator=generator).bfloat16()
    try:
        packed = torch.ops.mkldnn._reorder_linear_weight(weight, 16)
        return torch.equal(onednn_linear(x, packed, None, gelu=True), onednn_linear(x, weight, None, gelu=True))
    except RuntimeError:
        return False


def onednn_linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, gelu: bool) -> torch.Tensor:
    """oneDNN's linear with bias (and exact GELU) fused into the GEMM."""
    return torch.ops.mkldnn._linear_pointwise(x.contiguous(), weight, bias, "gelu" if gelu else "none", [],
                                              "none" if gelu else "")
