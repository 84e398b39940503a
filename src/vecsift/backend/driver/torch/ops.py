"""What this torch build and CPU offer the torch driver (oneDNN probes), and the int8 arithmetic.

int8 (CPU) is dynamic quantization of the linear layers: weights int8 per output channel, activations int8
per token (quantized on the fly), multiplied by oneDNN's quantized linear on AMX int8 tiles (int32
accumulation) and rescaled. Without AMX int8 that GEMM runs ~100× slower than fp32 (an AMD EPYC with
AVX-512 VNNI: 3.5 s for one 10-token text), so there the int8 weights are dequantized once at load and the
linear layers run in the activation dtype: int8's rounding, bf16's speed. Per-tensor activation scales, as
in torch's ``quantized.linear_dynamic``, are cheaper but cost too much accuracy on outlier tokens (min
cosine 0.946–0.971 against 0.997 per token).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from vecsift.hardware import has_amx_int8


def has_onednn_op(namespace: str, name: str) -> bool:
    """Whether this torch build has oneDNN and the operator ``torch.ops.<namespace>.<name>``."""
    return torch.backends.mkldnn.is_available() and hasattr(getattr(torch.ops, namespace), name)


#: oneDNN's linear: GEMM, bias and GELU in one pass over the output, on AMX tiles; the CPU bf16 path
#: whenever this torch build has it (``F.linear`` in bf16 is ~20% slower; in fp32 MKL's is as fast)
ONEDNN_LINEAR = has_onednn_op("mkldnn", "_linear_pointwise")
#: the int8 path's GEMM: oneDNN's quantized linear (s8 activations × s8 weights)
ONEDNN_INT8 = has_onednn_op("onednn", "qlinear_pointwise")
#: how int8 linear layers run: oneDNN's quantized GEMM, or int8 weights dequantized at load (see above)
INT8_KERNELS = ("onednn", "dequantized")
#: activations between the int8 GEMMs: bf16 where oneDNN runs it natively (AVX512-BF16/AMX)
INT8_ACTIVATIONS = (torch.bfloat16 if has_onednn_op("mkldnn", "_is_mkldnn_bf16_supported")
                    and torch.ops.mkldnn._is_mkldnn_bf16_supported() else torch.float32)
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


def onednn_linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, gelu: bool) -> torch.Tensor:
    """oneDNN's linear with bias (and exact GELU) fused into the GEMM."""
    return torch.ops.mkldnn._linear_pointwise(x.contiguous(), weight, bias, "gelu" if gelu else "none", [],
                                              "none" if gelu else "")
