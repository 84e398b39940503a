"""`TorchDriver`: the Driver primitives on torch, CPU or CUDA, in fp32, bf16, fp16 or int8.

Uses torch's fused kernels where they match the contract: scaled-dot-product
attention (with a key-padding mask, and a band mask on sliding-window layers),
on CUDA in fp16/bf16 variable-length flash attention over the packed batch,
layer norm, exact GELU. Activations run in the compute precision; layer norms,
softmax statistics and pooling accumulate in float32; the output is always
float32 unit vectors.

int8 (CPU) is dynamic quantization of the linear layers: weights int8 per output
channel, activations int8 per token (quantized on the fly), multiplied by oneDNN's
quantized linear on AMX int8 tiles (int32 accumulation) and rescaled. Without AMX
int8 that GEMM runs ~100× slower than fp32 (an AMD EPYC with AVX-512 VNNI: 3.5 s for
one 10-token text), so there the int8 weights are dequantized once at load and the
linear layers run in the activation dtype: int8's rounding, bf16's speed. Between
the GEMMs, activations are bf16 where the CPU supports it (as on the bf16 path),
float32 otherwise. Per-tensor activation scales, as in torch's
``quantized.linear_dynamic``, are cheaper but cost too much accuracy on outlier
tokens (min cosine 0.946–0.971 against 0.997 per token).
"""

from __future__ import annotations

import dataclasses
import inspect
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from vecsift.backend.driver.base import Driver
from vecsift.backend.token_batch import TokenBatch
from vecsift.errors import BackendError
from vecsift.hardware import has_amx_int8

#: device → precisions this driver runs there
PRECISIONS = {"cpu": ("fp32", "bf16", "int8"), "cuda": ("fp32", "bf16", "fp16")}


def _has_onednn_op(namespace: str, name: str) -> bool:
    """Whether this torch build has oneDNN and the operator ``torch.ops.<namespace>.<name>``."""
    return torch.backends.mkldnn.is_available() and hasattr(getattr(torch.ops, namespace), name)


#: oneDNN's linear: GEMM, bias and GELU in one pass over the output, on AMX tiles; the CPU bf16 path
#: whenever this torch build has it (``F.linear`` in bf16 is ~20% slower; in fp32 MKL's is as fast)
_ONEDNN_LINEAR = _has_onednn_op("mkldnn", "_linear_pointwise")
#: the int8 path's GEMM: oneDNN's quantized linear (s8 activations × s8 weights)
_ONEDNN_INT8 = _has_onednn_op("onednn", "qlinear_pointwise")
#: how int8 linear layers run: oneDNN's quantized GEMM, or int8 weights dequantized at load (see above)
INT8_KERNELS = ("onednn", "dequantized")
#: activations between the int8 GEMMs: bf16 where oneDNN runs it natively (AVX512-BF16/AMX)
_INT8_ACTIVATIONS = (torch.bfloat16 if _has_onednn_op("mkldnn", "_is_mkldnn_bf16_supported")
                     and torch.ops.mkldnn._is_mkldnn_bf16_supported() else torch.float32)
_DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16, "int8": _INT8_ACTIVATIONS}
#: tokens per CPU forward call: the GEMM outputs of ~2k tokens stay in cache (at 8k, FFN GEMMs lose ~20%)
_CPU_BATCH_TOKENS = 2048
#: activation scales are amax/127 enlarged by this much, so that rounding of ``x / scale`` in bf16 can
#: never reach 128 (which would wrap around in int8) and no clamp pass is needed
_QUANT_MARGIN = 1 + 2**-6


def _varlen_attention() -> tuple[Callable[..., torch.Tensor] | None, bool]:
    """torch's variable-length flash attention (CUDA, fp16/bf16) and whether it takes a sliding window;
    ``(None, False)`` on torch builds without it."""
    try:
        from torch.nn.attention.varlen import varlen_attn
    except ImportError:
        return None, False
    return varlen_attn, "window_size" in inspect.signature(varlen_attn).parameters


@dataclass(frozen=True)
class Int8Weight:
    """A linear weight quantized per output channel: ``weight ≈ values * scale[:, None]``."""

    packed: torch.Tensor  # the int8 values, prepacked by oneDNN for its quantized linear
    scale: torch.Tensor  # (out,) float32
    zero_points: torch.Tensor  # (out,) int64 zeros: the weights are symmetric


def default_int8_kernel() -> str:
    """oneDNN's quantized linear where the CPU has AMX int8 tiles, dequantized weights elsewhere."""
    return "onednn" if _ONEDNN_INT8 and has_amx_int8() else "dequantized"


class TorchDriver(Driver[torch.Tensor]):
    label = "torch"

    def __init__(self, device: str = "cpu", precision: str = "fp32", int8_kernel: str | None = None) -> None:
        kind = torch.device(device).type
        if kind not in PRECISIONS:
            raise BackendError(f"TorchDriver runs on {sorted(PRECISIONS)}, not {device!r}")
        if precision not in PRECISIONS[kind]:
            raise BackendError(
                f"precision {precision!r} is not supported on {kind} by the torch driver; "
                f"supported: {', '.join(f'{k}: {list(v)}' for k, v in PRECISIONS.items())}"
            )
        self.int8_kernel = (int8_kernel or default_int8_kernel()) if precision == "int8" else None
        if self.int8_kernel is not None and self.int8_kernel not in INT8_KERNELS:
            raise BackendError(f"unknown int8 kernel {self.int8_kernel!r}; choose one of {list(INT8_KERNELS)}")
        if self.int8_kernel == "onednn" and not _ONEDNN_INT8:
            raise BackendError("the onednn int8 kernel needs torch's oneDNN quantized linear "
                               f"(torch.ops.onednn.qlinear_pointwise), which this torch build ({torch.__version__}) "
                               "lacks; use the dequantized kernel, fp32 or bf16")
        if kind == "cuda" and not torch.cuda.is_available():
            raise BackendError("torch sees no CUDA device (torch.cuda.is_available() is False)")
        self.device = torch.device(device)
        self._precision = precision
        self.dtype = _DTYPES[precision]
        self.is_gpu = kind == "cuda"
        self.device_label = "CUDA" if self.is_gpu else "CPU"
        self.preferred_batch_tokens = 1 << 20 if self.is_gpu else _CPU_BATCH_TOKENS
        bf16_linear = precision == "bf16" or (self.int8_kernel == "dequantized" and self.dtype == torch.bfloat16)
        self._onednn = _ONEDNN_LINEAR and not self.is_gpu and bf16_linear
        self._varlen, self._varlen_window, self.attention_kernel = None, False, "sdpa"
        if self.is_gpu and self.dtype in (torch.float16, torch.bfloat16):
            self._use_varlen_if_it_works()
        self._cu_seqlens: tuple[np.ndarray | None, torch.Tensor | None] = (None, None)

    def _use_varlen_if_it_works(self) -> None:
        """Packed batches run attention in one flash kernel over all inputs (no padding, no loop over
        lengths) where this torch and GPU have it; a probe against SDPA decides, once per driver."""
        varlen, window = _varlen_attention()
        if varlen is None:
            self.attention_kernel = "sdpa (this torch has no varlen flash attention)"
            return
        generator = torch.Generator(self.device).manual_seed(0)
        q, k, v = torch.randn(3, 8, 2, 32, generator=generator, device=self.device, dtype=self.dtype)
        try:
            got = varlen(q, k, v, torch.tensor([0, 3, 8], device=self.device, dtype=torch.int32),
                         torch.tensor([0, 3, 8], device=self.device, dtype=torch.int32), 5, 5)
        except RuntimeError as err:  # e.g. a GPU older than flash attention supports
            self.attention_kernel = f"sdpa (varlen flash attention failed its probe: {err})"
            return
        want = torch.cat([F.scaled_dot_product_attention(*(x[a:b].transpose(0, 1)[None] for x in (q, k, v)))[0]
                          .transpose(0, 1) for a, b in ((0, 3), (3, 8))])
        if not torch.allclose(got.float(), want.float(), atol=1e-2):
            self.attention_kernel = "sdpa (varlen flash attention disagreed with SDPA in its probe)"
            return
        self._varlen, self._varlen_window = varlen, window
        self.attention_kernel = "varlen flash" + (" (sliding window too)" if window else " (global layers)")

    def clone(self) -> TorchDriver:
        return TorchDriver(str(self.device), self._precision, self.int8_kernel)

    def precision(self) -> str:
        return self._precision

    # -- moving data -------------------------------------------------------------------
    def weight(self, array: np.ndarray) -> torch.Tensor:
        with warnings.catch_warnings():  # read-only memory maps are fine: weights are never written
            warnings.simplefilter("ignore", UserWarning)
            tensor = torch.from_numpy(array)
        if self.is_gpu or self.dtype != torch.float32:
            return tensor.to(self.device, self.dtype)
        return tensor  # CPU fp32: a view of the memory map, shared by every clone

    def linear_weight(self, array: np.ndarray) -> Any:
        """As stored, ``(out, in)`` (int8: quantized per output channel, once at load, shared by every clone)."""
        if self._precision != "int8":
            return self.weight(array)
        weight = torch.from_numpy(np.array(array, dtype=np.float32))
        scale = weight.abs().amax(dim=1).clamp(min=1e-12) / 127.0
        values = torch.round(weight / scale[:, None]).to(torch.int8)
        if self.int8_kernel == "dequantized":
            return (values.float() * scale[:, None]).to(self.dtype)
        return Int8Weight(torch.ops.onednn.qlinear_prepack(values, None), scale,
                          torch.zeros(len(scale), dtype=torch.int64))

    def to_numpy(self, x: torch.Tensor) -> np.ndarray:
        return x.detach().to("cpu", torch.float32).numpy()

    def _index(self, ids: np.ndarray | torch.Tensor) -> torch.Tensor:
        if isinstance(ids, torch.Tensor):  # already staged on the device by upload()
            return ids.to(self.device)
        return torch.from_numpy(np.ascontiguousarray(ids)).to(self.device, non_blocking=True)

    def upload(self, batch: TokenBatch) -> TokenBatch:
        """CUDA: copy the token arrays to the device from pinned memory, asynchronously, on the ring's
        producer thread, so the copy overlaps the previous batch's forward pass. CPU: nothing to do."""
        if not self.is_gpu:
            return batch

        def staged(array: np.ndarray) -> torch.Tensor:
            return torch.from_numpy(array).pin_memory().to(self.device, non_blocking=True)

        return dataclasses.replace(batch, input_ids=staged(batch.input_ids),
                                   position_ids=staged(batch.position_ids),
                                   token_type_ids=staged(batch.token_type_ids))

    # -- primitives ---------------------------------------------------------------------
    def gather(self, table: torch.Tensor, ids: np.ndarray) -> torch.Tensor:
        return table[self._index(ids)].to(self.dtype)

    def copy(self, x: torch.Tensor) -> torch.Tensor:
        return x.clone()

    def add_(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return x.add_(y)

    def linear(self, x: torch.Tensor, weight: Any, bias: torch.Tensor | None,
               residual: torch.Tensor | None = None) -> torch.Tensor:
        out = self._linear(x, weight, bias, gelu=False)
        if residual is not None:  # added apart: oneDNN's fused residual add is slower in bf16
            out += residual
        return out

    def linear_gelu(self, x: torch.Tensor, weight: Any, bias: torch.Tensor | None) -> torch.Tensor:
        return self._linear(x, weight, bias, gelu=True)

    def _linear(self, x: torch.Tensor, weight: Any, bias: torch.Tensor | None, gelu: bool) -> torch.Tensor:
        if isinstance(weight, Int8Weight):
            out = self._int8_linear(x, weight, bias)
        elif self._onednn:
            return torch.ops.mkldnn._linear_pointwise(x.contiguous(), weight, bias, "gelu" if gelu else "none",
                                                      [], "none" if gelu else "")
        else:
            out = F.linear(x, weight, bias)
        return F.gelu(out) if gelu else out

    @staticmethod
    def _int8_linear(x: torch.Tensor, weight: Int8Weight, bias: torch.Tensor | None) -> torch.Tensor:
        """Per-token symmetric int8 activations (one scale per row keeps outlier tokens from costing
        the others their precision), int8 × int8 → int32 GEMM, rescaled to the activation dtype."""
        quantized, scale = quantize_per_token(x)
        out = torch.ops.onednn.qlinear_pointwise(quantized, 1.0, 0, weight.packed, weight.scale, weight.zero_points,
                                                 None, 1.0, 0, x.dtype, "none", [], "")
        return out.mul_(scale) if bias is None else torch.addcmul(bias, out, scale)

    def layer_norm(self, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None,
                   eps: float) -> torch.Tensor:
        return F.layer_norm(x, (x.shape[-1],), weight, bias, eps)  # accumulates in float32 for bf16/fp16

    layer_norm_ = layer_norm  # torch's layer norm writes a new tensor anyway: no copy needed first

    def gelu_(self, x: torch.Tensor) -> torch.Tensor:
        return F.gelu(x)

    def geglu(self, x: torch.Tensor) -> torch.Tensor:
        activated, gate = x.chunk(2, dim=-1)
        return F.gelu(activated) * gate

    def rope_(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, num_heads: int) -> torch.Tensor:
        """Into a new tensor, in the compute dtype (as transformers does): four passes, each half of the
        rotation written straight into its output (a float32 detour doubles the memory traffic)."""
        total, hidden = x.shape
        first, second = x.unflatten(1, (num_heads, 2, hidden // num_heads // 2)).unbind(2)
        cos, sin = cos[:, None, :], sin[:, None, :]
        out = torch.empty((total, num_heads, 2, hidden // num_heads // 2), dtype=x.dtype, device=x.device)
        torch.mul(first, cos, out=out[:, :, 0]).addcmul_(second, sin, value=-1)
        torch.mul(second, cos, out=out[:, :, 1]).addcmul_(first, sin)
        return out.view(total, hidden)

    def attention(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, batch: TokenBatch, num_heads: int,
                  window: int | None = None) -> torch.Tensor:
        if batch.dense and self._varlen is not None and (window is None or self._varlen_window):
            return self._varlen_attention(q, k, v, batch, num_heads, window)
        runs = batch.equal_length_runs() if batch.dense else []
        # A GPU pays per kernel launch: many runs of different lengths go as one padded, masked SDPA.
        if not batch.dense or (self.is_gpu and len(runs) > 1):
            return self._padded_attention(q, k, v, batch, num_heads, window)
        # Runs of equal-length inputs are contiguous rows: SDPA on views, no padding, no key mask.
        _total, hidden = q.shape
        head_dim = hidden // num_heads
        out = torch.empty_like(q)
        bounds = batch.cu_seqlens.tolist()
        for first, last, length in runs:
            rows = slice(bounds[first], bounds[last])

            def heads(x: torch.Tensor, rows: slice = rows, n: int = last - first, length: int = length) -> torch.Tensor:
                return x[rows].view(n, length, num_heads, head_dim).transpose(1, 2)

            band = None
            if window is not None and length > window + 1:
                offsets = torch.arange(length, device=self.device)
                band = (offsets[:, None] - offsets[None, :]).abs() <= window
            context = F.scaled_dot_product_attention(heads(q), heads(k), heads(v), attn_mask=band)
            out[rows] = context.transpose(1, 2).reshape(-1, hidden)
        return out

    def _varlen_attention(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, batch: TokenBatch,
                          num_heads: int, window: int | None) -> torch.Tensor:
        """Every input of the packed batch in one flash kernel, rows as they are (strided views too)."""
        total, hidden = q.shape
        if self._cu_seqlens[0] is not batch.cu_seqlens:  # once per batch, not per layer
            self._cu_seqlens = (batch.cu_seqlens, torch.from_numpy(batch.cu_seqlens.astype(np.int32)).to(self.device))
        cu_seqlens, longest = self._cu_seqlens[1], int(batch.lengths.max())
        extra = {} if window is None else {"window_size": (window, window)}
        context = self._varlen(*(x.unflatten(1, (num_heads, hidden // num_heads)) for x in (q, k, v)),
                               cu_seqlens, cu_seqlens, longest, longest, **extra)
        return context.reshape(total, hidden)

    def _padded_attention(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, batch: TokenBatch,
                          num_heads: int, window: int | None) -> torch.Tensor:
        """Inputs with masked-out tokens: padded layout with a key mask (and band) on their positions."""
        total, hidden = q.shape
        head_dim = hidden // num_heads
        lengths = batch.lengths
        count, width = len(lengths), int(lengths.max())
        starts = np.repeat(batch.cu_seqlens[:-1], lengths)
        slots = self._index(np.repeat(np.arange(count) * width, lengths) + np.arange(total) - starts)
        valid = torch.zeros(count * width, dtype=torch.bool, device=self.device)
        valid[slots] = True

        def padded(x: torch.Tensor) -> torch.Tensor:
            out = x.new_zeros((count * width, hidden))
            out[slots] = x
            return out.view(count, width, num_heads, head_dim).transpose(1, 2)

        mask = valid.view(count, 1, 1, width)
        if window is not None:
            positions = torch.zeros(count * width, dtype=torch.int64, device=self.device)
            positions[slots] = self._index(batch.position_ids)
            positions = positions.view(count, width)
            mask = mask & ((positions[:, :, None] - positions[:, None, :]).abs() <= window)[:, None]
        context = F.scaled_dot_product_attention(padded(q), padded(k), padded(v), attn_mask=mask)
        return context.transpose(1, 2).reshape(count * width, hidden)[slots]

    def pool(self, x: torch.Tensor, batch: TokenBatch, mode: str) -> torch.Tensor:
        x = x.float()
        starts = self._index(batch.cu_seqlens[:-1])
        if mode == "cls":
            return x[starts]
        segment = self._index(np.repeat(np.arange(batch.num_inputs), batch.lengths))
        if mode == "max":
            out = torch.full((batch.num_inputs, x.shape[1]), -torch.inf, device=self.device)
            return out.scatter_reduce_(0, segment[:, None].expand_as(x), x, reduce="amax")
        sums = torch.zeros((batch.num_inputs, x.shape[1]), device=self.device).index_add_(0, segment, x)
        lengths = torch.from_numpy(batch.lengths).to(self.device, torch.float32)[:, None]
        return sums / (lengths if mode == "mean" else lengths.sqrt())

    def l2_normalize(self, x: torch.Tensor) -> torch.Tensor:
        norms = x.float().norm(dim=1, keepdim=True)
        if not bool(torch.isfinite(norms).all()):
            raise BackendError("a pooled embedding is not finite: the forward pass produced NaN or inf")
        if not bool((norms > 0).all()):
            raise BackendError("a pooled embedding has zero length and cannot be normalized")
        return x.float() / norms

    def describe(self) -> dict[str, Any]:
        facts = {**super().describe(), "device": str(self.device), "torch": torch.__version__,
                 "torch_threads": torch.get_num_threads(), "attention": self.attention_kernel}
        if self.int8_kernel == "onednn":
            facts["int8_kernel"] = "oneDNN quantized linear, per-token int8 activations (AMX int8)"
        elif self.int8_kernel == "dequantized":
            facts["int8_kernel"] = (f"int8 weights dequantized to {str(self.dtype).removeprefix('torch.')} at load "
                                    "(no AMX int8 here: oneDNN's int8 GEMM would be ~100x slower than fp32)")
        return facts


def quantize_per_token(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Rows of ``x`` as int8 and their scales, ``x ≈ values * scale``; every value within ±127."""
    scale = x.abs().amax(dim=1, keepdim=True).clamp_(min=1e-12).mul_(_QUANT_MARGIN / 127.0)
    return torch.div(x, scale).round_().to(torch.int8), scale
