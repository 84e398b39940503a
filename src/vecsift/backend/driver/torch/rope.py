"""The torch driver's rotary position embedding routes, chosen once per driver as one object.

- :class:`TorchRope`: four elementwise passes in the compute dtype, each half of the rotation written
  straight into its output. Runs everywhere, but on CUDA the strided halves go through torch's slow
  non-vectorized elementwise kernel: on an H100 this was ~30% of ModernBERT's GPU time.
- :class:`FusedRope`: one Triton kernel (Triton ships with torch's CUDA builds) that reads each token's
  row of q and k heads once, rotates both halves in float32 registers and writes them once, rounding a
  single time. Used only on CUDA where Triton imports and a probe agrees with :class:`TorchRope`.

Both take ``x`` as ``(tokens, num_heads × head_dim)`` with any row stride (the q and k columns of a fused
qkv projection) and ``cos``/``sin`` as ``(tokens, head_dim / 2)``, and return a new contiguous tensor.
"""

from __future__ import annotations

import torch


class TorchRope:
    """Rotate-half RoPE in four torch passes (the portable route)."""

    def __init__(self, label: str = "torch elementwise") -> None:
        self.label = label

    def __call__(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, num_heads: int) -> torch.Tensor:
        total, hidden = x.shape
        half = hidden // num_heads // 2
        first, second = x.unflatten(1, (num_heads, 2, half)).unbind(2)
        cos, sin = cos[:, None, :], sin[:, None, :]
        out = torch.empty((total, num_heads, 2, half), dtype=x.dtype, device=x.device)
        torch.mul(first, cos, out=out[:, :, 0]).addcmul_(second, sin, value=-1)
        torch.mul(second, cos, out=out[:, :, 1]).addcmul_(first, sin)
        return out.view(total, hidden)


class FusedRope:
    """Rotate-half RoPE as one Triton kernel: one program per token, every head of the row at once."""

    label = "triton fused"

    def __init__(self, kernel: object) -> None:
        self.kernel = kernel  # the @triton.jit function from triton_kernel()

    def __call__(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, num_heads: int) -> torch.Tensor:
        import triton

        total, hidden = x.shape
        half = hidden // num_heads // 2
        if x.stride(1) != 1 or cos.stride(1) != 1 or sin.stride(1) != 1 or cos.stride(0) != sin.stride(0):
            x, cos, sin = x.contiguous(), cos.contiguous(), sin.contiguous()
        out = torch.empty((total, hidden), dtype=x.dtype, device=x.device)
        if total:
            self.kernel[(total,)](x, cos, sin, out, x.stride(0), cos.stride(0), hidden,
                                  HEADS=num_heads, HALF=half, HEADS_P2=triton.next_power_of_2(num_heads),
                                  HALF_P2=triton.next_power_of_2(half))
        return out


Rope = TorchRope | FusedRope


def triton_kernel() -> object | None:
    """The Triton RoPE kernel, or None where Triton is not installed (CPU builds of torch lack it)."""
    try:
        import triton
        import triton.language as tl
    except ImportError:
        return None

    @triton.jit
    def rope_kernel(x_ptr, cos_ptr, sin_ptr, out_ptr, x_stride, table_stride, out_stride,
                    HEADS: tl.constexpr, HALF: tl.constexpr, HEADS_P2: tl.constexpr, HALF_P2: tl.constexpr):
        row = tl.program_id(0).to(tl.int64)
        heads = tl.arange(0, HEADS_P2)[:, None]
        cols = tl.arange(0, HALF_P2)[None, :]
        inside = (heads < HEADS) & (cols < HALF)
        cos = tl.load(cos_ptr + row * table_stride + cols, mask=cols < HALF, other=0.0).to(tl.float32)
        sin = tl.load(sin_ptr + row * table_stride + cols, mask=cols < HALF, other=0.0).to(tl.float32)
        offsets = heads * (2 * HALF) + cols
        first = tl.load(x_ptr + row * x_stride + offsets, mask=inside, other=0.0).to(tl.float32)
        second = tl.load(x_ptr + row * x_stride + offsets + HALF, mask=inside, other=0.0).to(tl.float32)
        out = out_ptr + row * out_stride + offsets
        tl.store(out, (first * cos - second * sin).to(out_ptr.dtype.element_ty), mask=inside)
        tl.store(out + HALF, (second * cos + first * sin).to(out_ptr.dtype.element_ty), mask=inside)

    return rope_kernel


def choose_rope(device: torch.device, dtype: torch.dtype, kernel: object | None = None,
                interpreted: bool = False) -> Rope:
    """The route for a driver on ``device`` in ``dtype``: the fused kernel on CUDA when Triton has it and it
    agrees with :class:`TorchRope` on a probe, else the torch passes, labelled with the reason (``vecsift
    info`` shows it). ``kernel``/``interpreted``: tests run the probe on the CPU in Triton's interpreter."""
    if device.type != "cuda" and not interpreted:
        return TorchRope()
    kernel = kernel if kernel is not None else triton_kernel()
    if kernel is None:
        return TorchRope("torch elementwise (Triton is not installed)")
    fused, reference = FusedRope(kernel), TorchRope()
    generator = torch.Generator(device).manual_seed(0)
    qkv = torch.randn(5, 3 * 2 * 3 * 8, generator=generator, device=device).to(dtype)  # 5 tokens, 2×3 heads of 8
    angles = torch.rand(5, 4, generator=generator, device=device) * 6.3
    x, cos, sin = qkv[:, : 2 * 3 * 8], angles.cos().to(dtype), angles.sin().to(dtype)
    try:
        got = fused(x, cos, sin, 6)
    except Exception as err:  # Triton raises its own types for a GPU or toolchain it cannot compile for
        return TorchRope(f"torch elementwise (the Triton kernel failed its probe: {type(err).__name__}: {err})")
    if not torch.allclose(got.float(), reference(x, cos, sin, 6).float(), atol=2e-2, rtol=2e-2):
        return TorchRope("torch elementwise (the Triton kernel disagreed with it in its probe)")
    return fused
