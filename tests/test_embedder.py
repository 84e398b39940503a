from __future__ import annotations

import numpy as np
import pytest

from fakes import FakeBackend
from vecsift import Embedder
from vecsift.errors import EncodingError, UsageError


@pytest.fixture(scope="module")
def embedder():
    return Embedder("all-MiniLM-L6-v2", batch_size=4, workers=2)


def test_embed_texts(embedder, backend, tokenizer):
    texts = ["retry with backoff", "def retry(fn):\n    ...", "", "🚀"]
    vectors = embedder.embed(texts)
    assert vectors.shape == (4, 384) and embedder.dim == 384
    np.testing.assert_allclose(vectors, backend.embed_batch(tokenizer.encode(texts)), atol=1e-6)
    related = vectors[0] @ vectors[1]
    assert related > vectors[0] @ vectors[3]


def test_progress_and_describe(embedder):
    seen = []
    embedder.embed(["a", "b", "c"], progress=seen.append)
    assert sum(seen) == 3
    facts = embedder.describe()
    assert facts["architecture"] == "ClassicBert" and facts["truncation"] == 256 and facts["pooling"] == "mean"


def test_max_tokens_and_custom_backends():
    custom = Embedder(backends=[FakeBackend(dim=5)], max_tokens=8)
    assert custom.max_tokens == 8 and custom.embed(["x " * 100]).shape == (1, 5)
    with pytest.raises(UsageError, match="must not be empty"):
        Embedder(backends=[])
    with pytest.raises(EncodingError):
        Embedder(max_tokens=0)
