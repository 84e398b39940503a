"""`TorchDriver`: the Driver primitives on torch, CPU or CUDA, in fp32, bf16, fp16 or int8.

Uses torch's fused kernels where they match the contract: attention and RoPE through the routes chosen
once (:mod:`.attention`, :mod:`.rope`), layer norm, exact GELU, and on CPU in bf16 oneDNN's linear with
bias and GELU fused (:mod:`.ops`, which also holds the int8 arithmetic). Activations run in the compute precision; layer
norms, softmax statistics and pooling accumulate in float32; the output is always float32 unit vectors.
"""

from __future__ import annotations

import dataclasses
import warnings
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from vecsift.backend.driver.base import Driver
from vecsift.backend.driver.torch import ops
from vecsift.backend.driver.torch.attention import choose_attention
from vecsift.backend.driver.torch.rope import choose_rope
from vecsift.backend.precision import check_supported
from vecsift.backend.token_batch import TokenBatch
from vecsift.errors import BackendError

_DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
#: tokens per CPU forward call: the GEMM outputs of ~2k tokens stay in cache (at 8k, FFN GEMMs lose ~20%)
_CPU_BATCH_TOKENS = 2048


class TorchDriver(Driver[torch.Tensor]):
    label = "torch"

    def __init__(self, device: str = "cpu", precision: str = "fp32", int8_kernel: str | None = None) -> None:
        kind = torch.device(device).type
        if kind not in ("cpu", "cuda"):
            raise BackendError(f"TorchDriver runs on cpu or cuda, not {device!r}")
        check_supported(kind, "torch", precision)
        self.int8_kernel = _int8_kernel(int8_kernel) if precision == "int8" else None
        if kind == "cuda" and not torch.cuda.is_available():
            raise BackendError("torch sees no CUDA device (torch.cuda.is_available() is False)")
        self.device = torch.device(device)
        self._precision = precision
        self.dtype = ops.int8_activations(self.int8_kernel) if self.int8_kernel else _DTYPES[precision]
        self.is_gpu = kind == "cuda"
        self.device_label = "CUDA" if self.is_gpu else "CPU"
        self.preferred_batch_tokens = 1 << 20 if self.is_gpu else _CPU_BATCH_TOKENS
        bf16_linear = precision == "bf16" or (self.int8_kernel == "dequantized" and self.dtype == torch.bfloat16)
        #: whether linear layers run oneDNN's fused linear (CPU, bf16 GEMMs, where this torch has it)
        self.fused_linear = ops.ONEDNN_LINEAR and not self.is_gpu and bf16_linear
        #: whether linear layers are oneDNN GEMMs, built once per shape (so row counts are bucketed)
        self.bucket_gemm_rows = self.fused_linear or self.int8_kernel == "onednn"
        #: the attention route, chosen once (a probe decides varlen flash attention on CUDA)
        self.attention_route = choose_attention(self.device, self.dtype)
        #: the RoPE route, chosen once (a probe decides the fused Triton kernel on CUDA)
        self.rope_route = choose_rope(self.device, self.dtype)

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
        """As stored, ``(out, in)`` (int8: quantized per output channel), prepared once at load and shared by
        every clone; for oneDNN's fused linear, packed into its own layout (see :func:`ops.packed_linear_weight`)."""
        weight = self.weight(array) if self.int8_kernel is None else ops.quantize_weight(array, self.int8_kernel,
                                                                                         self.dtype)
        if self.fused_linear:
            return ops.packed_linear_weight(weight, _CPU_BATCH_TOKENS)
        return weight

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
        rows = x.shape[0]
        if self.bucket_gemm_rows and (padded := ops.bucket_rows(rows)) != rows:  # few shapes: see bucket_rows
            return self._linear(ops.grown_rows(x, padded), weight, bias, gelu)[:rows]
        if isinstance(weight, ops.Int8Weight):
            out = ops.int8_linear(x, weight, bias)
        elif self.fused_linear:
            return ops.onednn_linear(x, weight, bias, gelu)
        else:
            out = F.linear(x, weight, bias)
        return F.gelu(out) if gelu else out

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
        """Into a new tensor, in the compute dtype (as transformers does), by the route chosen once."""
        return self.rope_route(x, cos, sin, num_heads)

    def attention(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, batch: TokenBatch, num_heads: int,
                  window: int | None = None) -> torch.Tensor:
        return self.attention_route(q, k, v, batch, num_heads, window)

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
                 "torch_threads": torch.get_num_threads(), "attention": self.attention_route.label,
                 "rope": self.rope_route.label}
        if self.int8_kernel == "onednn":
            facts["int8_kernel"] = "oneDNN quantized linear, per-token int8 activations (AMX int8)"
        elif self.int8_kernel == "dequantized":
            facts["int8_kernel"] = (f"int8 weights dequantized to {str(self.dtype).removeprefix('torch.')} at load "
                                    "(no AMX int8 here: oneDNN's int8 GEMM would be ~100x slower than fp32)")
        return facts


def _int8_kernel(requested: str | None) -> str:
    """The int8 kernel to use: ``requested``, checked, or the one this CPU and torch build run fast."""
    kernel = requested or ops.default_int8_kernel()
    if kernel not in ops.INT8_KERNELS:
        raise BackendError(f"unknown int8 kernel {kernel!r}; choose one of {list(ops.INT8_KERNELS)}")
    if kernel == "onednn" and not ops.ONEDNN_INT8:
        raise BackendError("the onednn int8 kernel needs torch's oneDNN quantized linear "
                           f"(torch.ops.onednn.qlinear_pointwise), which this torch build ({torch.__version__}) "
                           "lacks; use the dequantized kernel, fp32 or bf16")
    return kernel
