"""NumpyDriver primitives against straightforward float64 references."""

from __future__ import annotations

import math

import numpy as np
import pytest

from vecsift import Encoding
from vecsift.backend.driver.numpy_driver import NumpyDriver
from vecsift.backend.token_batch import TokenBatch


def batch_of(lengths):
    return TokenBatch.from_encodings([Encoding.from_ids(np.arange(n) + 1) for n in lengths])


def test_gelu_is_exact_to_float32_resolution():
    x = np.concatenate([np.linspace(-12, 12, 200_001), [0.0, -0.0, 1e-30, -1e-30, 50, -50, 1e4, -1e4]])
    reference = np.array([v * 0.5 * (1 + math.erf(v / math.sqrt(2))) for v in x])
    ours = NumpyDriver().gelu_(x.astype(np.float32).reshape(1, -1)).reshape(-1).astype(np.float64)
    # A&S 7.1.26 has |erf error| ≤ 1.5e-7, so |gelu error| ≤ 0.75e-7·|x| plus float32 rounding.
    assert np.all(np.abs(ours - reference) <= 3e-7 * np.maximum(1.0, np.abs(x)))


def naive_attention(q, k, v, lengths, heads):
    out = np.zeros_like(q, dtype=np.float64)
    d = q.shape[1] // heads
    start = 0
    for n in lengths:
        for h in range(heads):
            cols = slice(h * d, (h + 1) * d)
            qs, ks, vs = (a[start : start + n, cols].astype(np.float64) for a in (q, k, v))
            scores = qs @ ks.T / math.sqrt(d)
            weights = np.exp(scores - scores.max(axis=1, keepdims=True))
            out[start : start + n, cols] = (weights / weights.sum(axis=1, keepdims=True)) @ vs
        start += n
    return out


@pytest.mark.parametrize(("scale", "outlier"), [(1.0, 0.0), (6.0, 0.0), (1.0, 1000.0)])
def test_attention_stays_within_each_input(scale, outlier):
    """An outlier key, orthogonal to every query, makes the norm bound overshoot so far that
    every shifted exp() vanishes: only the exact-max fallback gets those rows right."""
    rng = np.random.default_rng(0)
    lengths, heads, hidden = [1, 7, 130, 33], 4, 32
    q, k, v = (rng.standard_normal((sum(lengths), hidden)).astype(np.float32) * s for s in (scale, scale, 1.0))
    if outlier:
        q[:, ::8] = 0.0  # the first feature of every head
        k[::5, ::8] = outlier
    ours = NumpyDriver().attention(q, k, v, batch_of(lengths), heads)
    np.testing.assert_allclose(ours, naive_attention(q, k, v, lengths, heads), atol=2e-5, rtol=1e-4)


def test_layer_norm():
    rng = np.random.default_rng(1)
    x = rng.standard_normal((5, 16)).astype(np.float32) * 3 + 2
    w, b = rng.standard_normal(16).astype(np.float32), rng.standard_normal(16).astype(np.float32)
    x64 = x.astype(np.float64)
    reference = (x64 - x64.mean(1, keepdims=True)) / np.sqrt(x64.var(1, keepdims=True) + 1e-12) * w + b
    np.testing.assert_allclose(NumpyDriver().layer_norm_(x.copy(), w, b, 1e-12), reference, atol=1e-5)


@pytest.mark.parametrize("mode", ["mean", "cls", "max", "mean_sqrt_len"])
def test_pooling_modes(mode):
    lengths = [3, 1, 5]
    x = np.random.default_rng(2).standard_normal((9, 4)).astype(np.float32)
    parts = np.split(x, np.cumsum(lengths)[:-1])
    expected = {
        "mean": [p.mean(0) for p in parts],
        "cls": [p[0] for p in parts],
        "max": [p.max(0) for p in parts],
        "mean_sqrt_len": [p.sum(0) / math.sqrt(len(p)) for p in parts],
    }[mode]
    np.testing.assert_allclose(NumpyDriver().pool(x, batch_of(lengths), mode), np.stack(expected), atol=1e-6)


def test_token_batch_drops_masked_tokens_but_keeps_their_positions():
    e = Encoding([101, 5, 0, 6, 0], [1, 1, 0, 1, 0], [0, 0, 0, 1, 0])
    batch = TokenBatch.from_encodings([e, Encoding.from_ids([7, 8])])
    assert batch.input_ids.tolist() == [101, 5, 6, 7, 8]
    assert batch.position_ids.tolist() == [0, 1, 3, 0, 1]
    assert batch.token_type_ids.tolist() == [0, 0, 1, 0, 0]
    assert batch.cu_seqlens.tolist() == [0, 3, 5] and batch.spans() == [(0, 3), (3, 5)]
