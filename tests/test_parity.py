"""Correctness against reference implementations on real and random weights."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from references import reference_bert_vectors
from texts import varied_texts
from vecsift import Encoding, embed_distributed, load_backend, load_tokenizer

# Tolerances (asserted below): cosine vs sentence-transformers on the bundled model, and
# max abs difference of normalized pooled vectors vs transformers' BertModel on random weights.
MIN_COSINE_VS_SENTENCE_TRANSFORMERS = 0.99999
MAX_ABS_DIFF_VS_TRANSFORMERS = 1e-5


@pytest.fixture(scope="module")
def sentence_transformer(bundled_dir):
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(str(bundled_dir), device="cpu")


@pytest.mark.slow
def test_bundled_model_matches_sentence_transformers(backend, tokenizer, sentence_transformer):
    texts = varied_texts(220)
    assert len(texts) >= 200
    encodings = tokenizer.encode(texts)
    # Same truncation as sentence-transformers (its max_seq_length of 256).
    st_ids = sentence_transformer.tokenize(texts)["input_ids"]
    st_lengths = st_ids.ne(0).sum(1).tolist()
    assert [len(e) for e in encodings] == st_lengths
    assert max(st_lengths) == sentence_transformer.max_seq_length == 256
    ours = embed_distributed(encodings, [backend], batch_size=32)
    reference = sentence_transformer.encode(texts, batch_size=32, normalize_embeddings=True)
    cosines = (ours * reference).sum(axis=1)
    assert cosines.min() >= MIN_COSINE_VS_SENTENCE_TRANSFORMERS, (cosines.min(), texts[int(cosines.argmin())][:80])
    np.testing.assert_allclose(np.linalg.norm(ours, axis=1), 1.0, atol=1e-6)


@pytest.mark.parametrize(
    ("shape", "pooling"),
    [
        ({"hidden": 64, "heads": 4, "layers": 2, "intermediate": 128}, "cls"),
        ({"hidden": 48, "heads": 3, "layers": 3, "intermediate": 96, "max_positions": 128}, "mean"),
        ({"hidden": 96, "heads": 8, "layers": 1, "intermediate": 384}, "max"),
        ({"hidden": 32, "heads": 2, "layers": 2, "intermediate": 64}, "mean_sqrt_len"),
    ],
)
def test_random_bert_matches_transformers(make_bert, shape, pooling):
    directory = make_bert(pooling=pooling, **shape)
    backend = load_backend("cpu", str(directory), driver="numpy")
    tokenizer = load_tokenizer(str(directory))
    rng = np.random.default_rng(1)
    texts = varied_texts(40, seed=2)
    # Pairs exercise token type 1; the tokenizer's own pairs are not exposed, so set types by hand.
    encodings = []
    for e in tokenizer.encode(texts):
        types = e.token_type_ids.copy()
        types[len(e) // 2 :] = rng.integers(0, 2)
        encodings.append(Encoding(e.input_ids, e.attention_mask, types))
    ours = backend.embed_batch(encodings)
    reference = reference_bert_vectors(directory, encodings, pooling)
    assert np.abs(ours - reference).max() <= MAX_ABS_DIFF_VS_TRANSFORMERS
    assert max(len(e) for e in encodings) == tokenizer.default_max_tokens  # long inputs were truncated


def test_padding_in_encodings_is_ignored(make_bert):
    """Tokens with mask 0 take no part: padded and unpadded encodings embed identically."""
    directory = make_bert(pooling="mean")
    backend = load_backend("cpu", str(directory), driver="numpy")
    encodings = load_tokenizer(str(directory)).encode(["short text", "a somewhat longer piece of text here"])
    width = max(len(e) for e in encodings)
    padded = [Encoding(np.pad(e.input_ids, (0, width - len(e))), np.pad(e.attention_mask, (0, width - len(e))),
                       np.pad(e.token_type_ids, (0, width - len(e)))) for e in encodings]
    np.testing.assert_allclose(backend.embed_batch(padded), backend.embed_batch(encodings), atol=1e-6)
    reference = reference_bert_vectors(directory, padded, "mean")
    assert np.abs(backend.embed_batch(padded) - reference).max() <= MAX_ABS_DIFF_VS_TRANSFORMERS


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_checkpoints_are_widened_at_load(make_bert, dtype):
    directory = make_bert(pooling="cls", dtype=dtype)
    backend = load_backend("cpu", str(directory), driver="numpy")
    encodings = load_tokenizer(str(directory)).encode(varied_texts(12, seed=3))
    reference = reference_bert_vectors(directory, encodings, "cls")  # loads the same weights as fp32
    assert np.abs(backend.embed_batch(encodings) - reference).max() <= MAX_ABS_DIFF_VS_TRANSFORMERS


def test_masked_lm_checkpoint_with_bert_prefix_loads(make_bert):
    directory = make_bert(pooling="mean", masked_lm=True)
    backend = load_backend("cpu", str(directory), driver="numpy")
    encodings = load_tokenizer(str(directory)).encode(["prefixed tensor names"])
    reference = reference_bert_vectors(directory, encodings, "mean")
    assert np.abs(backend.embed_batch(encodings) - reference).max() <= MAX_ABS_DIFF_VS_TRANSFORMERS
