"""`NumpyDriver`: the fp32 CPU driver, NumPy over the BLAS it was built with.

Shaped for a CPU cache: callers pass sub-batches of about
``preferred_batch_tokens`` tokens, attention runs per input over contiguous
per-head arrays (stacked GEMMs over strided views are ~5× slower), and the
element-wise GELU runs in cache-sized chunks through reusable scratch buffers.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from vecsift.backend.driver.base import Driver
from vecsift.backend.token_batch import TokenBatch
from vecsift.errors import BackendError

# Abramowitz & Stegun 7.1.26: erf(z) = 1 - t·P(t)·exp(-z²), t = 1/(1 + p·z), z ≥ 0, |error| ≤ 1.5e-7,
# below float32 resolution; scipy's erf is ~5x slower than the GEMM that feeds it.
_AS_P = 0.3275911
_AS_COEFFS = (1.061405429, -1.453152027, 1.421413741, -0.284496736, 0.254829592)  # a5 … a1
_GELU_CHUNK = 32768  # floats per element-wise pass: scratch stays in L2
_SCORES_BUDGET = 1 << 16  # attention scores per head group (floats): keeps them in L1/L2
# Inputs up to this length attend in one block; longer ones in blocks of _QUERY_BLOCK queries.
_FULL_ATTENTION_MAX = 1024
_QUERY_BLOCK = 256
# A softmax denominator below this means the shifted exps reached subnormals: redo with the exact max.
_TINY_DENOMINATOR = 1e-30


def _exp_(scores: np.ndarray) -> None:
    """``exp`` in place, arguments clamped at -80 so that no result is subnormal.

    Subnormal operands make the next GEMM several times slower on x86; terms below
    e^-80 change a softmax sum (whose largest term is ≥ e^-69) by under 1e-4 ulp.
    """
    np.maximum(scores, -80.0, out=scores)
    np.exp(scores, out=scores)


def _attention_blocks(positions: np.ndarray, window: int | None):
    """(query rows, key rows, mask or None) blocks covering one input's attention.

    Short inputs are one block. Long ones are cut into query blocks; with a window,
    each block sees only the key rows within ``window`` positions of it (a band),
    so memory grows linearly with the length.
    """
    n = len(positions)
    full = window is None or positions[-1] - positions[0] <= window
    block = n if n <= _FULL_ATTENTION_MAX and full else _QUERY_BLOCK
    for first in range(0, n, block):
        rows = slice(first, min(n, first + block))
        if window is None:
            yield rows, slice(0, n), None
            continue
        lo = int(np.searchsorted(positions, positions[rows.start] - window, side="left"))
        hi = int(np.searchsorted(positions, positions[rows.stop - 1] + window, side="right"))
        allowed = np.abs(positions[rows, None] - positions[None, lo:hi]) <= window
        yield rows, slice(lo, hi), (None if allowed.all() else allowed.astype(np.float32))


def _attend(qh: np.ndarray, kh: np.ndarray, vh: np.ndarray, allowed: np.ndarray | None,
            context: np.ndarray) -> None:
    """Softmax attention of one block, head group by head group, written into ``context``."""
    num_heads, rows, width = qh.shape
    d = width - 1
    group = max(1, _SCORES_BUDGET // (rows * kh.shape[1]))
    for h in range(0, num_heads, group):
        heads = slice(h, h + group)
        scores = np.matmul(qh[heads], kh[heads].transpose(0, 2, 1))
        _exp_(scores)
        if allowed is not None:
            scores *= allowed
        weighted = np.matmul(scores, vh[heads])
        if weighted[:, :, d].min() < _TINY_DENOMINATOR:
            # The bound overshot so far that a row's exps vanish: shift by the exact max.
            scores = np.matmul(qh[heads, :, :d], kh[heads, :, :d].transpose(0, 2, 1))
            if allowed is not None:
                scores[:, allowed == 0] = -np.inf
            scores -= scores.max(axis=-1, keepdims=True)
            _exp_(scores)
            if allowed is not None:
                scores *= allowed
            weighted = np.matmul(scores, vh[heads])
        np.divide(weighted[:, :, :d], weighted[:, :, d:], out=context[heads])


def _heads_view(x: np.ndarray, num_heads: int) -> np.ndarray:
    """``(n, heads·head_dim)`` seen as ``(heads, n, head_dim)``, no copy."""
    n, hidden = x.shape
    return x.reshape(n, num_heads, hidden // num_heads).transpose(1, 0, 2)


class NumpyDriver(Driver[np.ndarray]):
    label = "numpy"
    is_gpu = False
    preferred_batch_tokens = 1024

    def __init__(self) -> None:
        self._scratch = np.empty((4, _GELU_CHUNK), dtype=np.float32)

    def clone(self) -> NumpyDriver:
        return NumpyDriver()

    def weight(self, array: np.ndarray) -> np.ndarray:
        if array.dtype != np.float32:
            raise BackendError(f"NumpyDriver takes float32 weights, got {array.dtype}")
        return array  # a read-only view into the memory-mapped file: shared, never copied

    def to_numpy(self, x: np.ndarray) -> np.ndarray:
        return x

    def gather(self, table: np.ndarray, ids: np.ndarray) -> np.ndarray:
        return table[ids]

    def copy(self, x: np.ndarray) -> np.ndarray:
        return np.array(x, dtype=np.float32, order="C")

    def add_(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        x += y
        return x

    def linear(
        self, x: np.ndarray, weight: np.ndarray, bias: np.ndarray | None, residual: np.ndarray | None = None
    ) -> np.ndarray:
        out = x @ weight.T
        if bias is not None:
            out += bias
        if residual is not None:
            out += residual
        return out

    def layer_norm_(self, x: np.ndarray, weight: np.ndarray, bias: np.ndarray | None, eps: float) -> np.ndarray:
        x -= x.mean(axis=-1, keepdims=True)
        variance = np.einsum("ij,ij->i", x, x)[:, None]
        variance *= 1.0 / x.shape[-1]
        variance += eps
        np.sqrt(variance, out=variance)
        x /= variance
        x *= weight
        if bias is not None:
            x += bias
        return x

    def gelu_(self, x: np.ndarray) -> np.ndarray:
        # gelu(x) = x·Φ(x) = relu(x) - |x|·q with q = ½·t·P(t)·exp(-x²/2), t = 1/(1 + p|x|/√2).
        flat = x.reshape(-1)
        a_all, t_all, poly_all, e_all = self._scratch
        for start in range(0, flat.size, _GELU_CHUNK):
            xs = flat[start : start + _GELU_CHUNK]
            n = xs.size
            a, t, poly, e = a_all[:n], t_all[:n], poly_all[:n], e_all[:n]
            np.abs(xs, out=a)
            np.multiply(a, _AS_P / np.sqrt(2.0), out=t)
            t += 1.0
            np.reciprocal(t, out=t)
            np.multiply(t, 0.5 * _AS_COEFFS[0], out=poly)
            for coeff in _AS_COEFFS[1:]:
                poly += 0.5 * coeff
                poly *= t
            np.multiply(a, a, out=e)
            e *= -0.5
            np.exp(e, out=e)
            poly *= e
            poly *= a
            np.maximum(xs, 0.0, out=xs)
            xs -= poly
        return x

    def geglu(self, x: np.ndarray) -> np.ndarray:
        width = x.shape[1] // 2
        activated = self.gelu_(np.ascontiguousarray(x[:, :width]))
        activated *= x[:, width:]
        return activated

    def rope_(self, x: np.ndarray, cos: np.ndarray, sin: np.ndarray, num_heads: int) -> np.ndarray:
        total, hidden = x.shape
        half = hidden // num_heads // 2
        heads = x.reshape(total, num_heads, 2, half)
        first, second = heads[:, :, 0], heads[:, :, 1]
        cos, sin = cos[:, None, :], sin[:, None, :]
        rotated_first = first * cos - second * sin
        second *= cos
        second += first * sin
        first[...] = rotated_first
        return x

    def attention(
        self, q: np.ndarray, k: np.ndarray, v: np.ndarray, batch: TokenBatch, num_heads: int,
        window: int | None = None,
    ) -> np.ndarray:
        total, hidden = q.shape
        d = hidden // num_heads
        out = np.empty((total, hidden), dtype=np.float32)
        for start, end in batch.spans():
            n = end - start
            # (n, hidden) → (heads, n, d + 1), contiguous: the layout stacked GEMMs want. The extra
            # column folds the softmax shift into QKᵀ (q gets -bᵢ, k gets 1) and makes the PV GEMM
            # return the softmax denominator too (v gets 1), saving three passes over the scores.
            qh = np.empty((num_heads, n, d + 1), dtype=np.float32)
            np.multiply(_heads_view(q[start:end], num_heads), 1.0 / np.sqrt(d), out=qh[:, :, :d])
            kh = np.empty_like(qh)
            kh[:, :, :d] = _heads_view(k[start:end], num_heads)
            kh[:, :, d] = 1.0
            vh = np.empty_like(qh)
            vh[:, :, :d] = _heads_view(v[start:end], num_heads)
            vh[:, :, d] = 1.0
            # Shift row i by bᵢ = |qᵢ|·maxⱼ|kⱼ| ≥ maxⱼ qᵢ·kⱼ: every exp() is ≤ 1, none overflows.
            key_norm = np.sqrt(np.einsum("hnd,hnd->hn", kh[:, :, :d], kh[:, :, :d]).max(axis=1))
            query_norm = np.sqrt(np.einsum("hnd,hnd->hn", qh[:, :, :d], qh[:, :, :d]))
            np.multiply(query_norm, -key_norm[:, None], out=qh[:, :, d])
            context = _heads_view(out[start:end], num_heads)
            for rows, keys, allowed in _attention_blocks(batch.position_ids[start:end], window):
                _attend(qh[:, rows], kh[:, keys], vh[:, keys], allowed, context[:, rows])
        return out

    def pool(self, x: np.ndarray, batch: TokenBatch, mode: str) -> np.ndarray:
        starts = batch.cu_seqlens[:-1]
        if mode == "cls":
            return x[starts]
        if mode == "max":
            return np.maximum.reduceat(x, starts, axis=0)
        lengths = batch.lengths
        scale = 1.0 / (lengths if mode == "mean" else np.sqrt(lengths))
        # A segment matrix turns the per-input sums into one accurate BLAS call.
        segments = np.zeros((batch.num_inputs, batch.total_tokens), dtype=np.float32)
        rows = np.repeat(np.arange(batch.num_inputs), lengths)
        segments[rows, np.arange(batch.total_tokens)] = np.repeat(scale, lengths)
        return segments @ x

    def l2_normalize(self, x: np.ndarray) -> np.ndarray:
        norms = np.linalg.norm(x, axis=1, keepdims=True)
        if not np.isfinite(norms).all():
            raise BackendError("a pooled embedding is not finite: the forward pass produced NaN or inf")
        if not np.all(norms > 0):
            raise BackendError("a pooled embedding has zero length and cannot be normalized")
        return x / norms

    def describe(self) -> dict[str, Any]:
        from threadpoolctl import threadpool_info

        blas = [f"{i.get('internal_api')} {i.get('version')} ({i.get('architecture')})"
                for i in threadpool_info() if i.get("user_api") == "blas"]
        return {**super().describe(), "blas": ", ".join(blas) or "unknown"}
