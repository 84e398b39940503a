"""ModernBERT over the Driver primitives, against transformers' ModernBertModel on random weights."""

from __future__ import annotations

import json
import shutil
import tracemalloc
from pathlib import Path

import numpy as np
import pytest

from references import reference_modernbert_hidden
from vecsift import Encoding, load_backend, load_tokenizer
from vecsift.backend.token_batch import TokenBatch
from vecsift.errors import ModelLoadError

# Tolerances (asserted): last hidden state per real token, and pooled vectors.
MAX_ABS_DIFF_HIDDEN = 1e-4
MIN_COSINE_POOLED = 0.99999


def encodings_of_lengths(directory, lengths):
    """Real token ids (the bundled tokenizer on real source code), cut to each length, [CLS] … [SEP]."""
    ids = load_tokenizer(str(directory)).encode([Path(json.__file__).read_text()], max_tokens=2048)[0].input_ids
    return [Encoding.from_ids(np.concatenate([[101], ids[1 : n - 1], [102]]) if n > 1 else [101]) for n in lengths]


def compare(directory, lengths, pooling="mean"):
    backend = load_backend("cpu", str(directory), driver="numpy")
    encodings = encodings_of_lengths(directory, lengths)
    assert [len(e) for e in encodings] == lengths
    reference, mask = reference_modernbert_hidden(directory, encodings)
    ours = backend.arch.hidden_states(backend.driver, TokenBatch.from_encodings(encodings))
    assert np.abs(ours - reference[mask == 1]).max() <= MAX_ABS_DIFF_HIDDEN
    m = mask[..., None]
    pooled = reference[:, 0] if pooling == "cls" else (reference * m).sum(1) / m.sum(1)
    pooled /= np.linalg.norm(pooled, axis=1, keepdims=True)
    vectors = backend.embed_batch(encodings)
    assert (vectors * pooled).sum(1).min() >= MIN_COSINE_POOLED
    return backend


@pytest.mark.parametrize(
    ("config", "lengths"),
    [
        ({"every": 1, "window": 16}, [2, 5, 40, 100]),  # all layers global
        ({"every": 2, "window": 16}, [3, 17, 64, 150]),  # window far smaller than the sequences
        ({"every": 3, "window": 8, "layers": 4}, [1, 9, 33, 120]),
        ({"every": 2, "window": 16, "bias": True, "pooling": "cls"}, [4, 30, 90]),
        ({"every": 3, "window": 256, "layers": 3}, [6, 50]),  # window larger than every sequence
        ({"every": 2, "window": 32, "layers": 2}, [2, 300, 700, 1024]),  # long: attention runs in query blocks
    ],
)
def test_matches_transformers(make_modernbert, config, lengths):
    compare(make_modernbert(**config), lengths, config.get("pooling", "mean"))


def test_original_config_format(make_modernbert, tmp_path):
    """Real checkpoints carry global_rope_theta / local_rope_theta / global_attn_every_n_layers."""
    source = make_modernbert(every=2, window=16)
    legacy = tmp_path / "legacy"
    shutil.copytree(source, legacy)
    config = json.loads((legacy / "config.json").read_text())
    layer_types, rope = config.pop("layer_types"), config.pop("rope_parameters")
    assert layer_types == ["full_attention", "sliding_attention", "full_attention"]
    config.update(global_attn_every_n_layers=2, global_rope_theta=rope["full_attention"]["rope_theta"],
                  local_rope_theta=rope["sliding_attention"]["rope_theta"])
    (legacy / "config.json").write_text(json.dumps(config))
    encodings = encodings_of_lengths(legacy, [5, 80])
    np.testing.assert_allclose(load_backend("cpu", str(legacy), driver="numpy").embed_batch(encodings),
                               load_backend("cpu", str(source), driver="numpy").embed_batch(encodings), atol=1e-6)
    compare(legacy, [5, 80])


def test_masked_lm_checkpoint_with_model_prefix(make_modernbert):
    compare(make_modernbert(masked_lm=True), [3, 40])


def test_info_shows_the_layer_pattern(make_modernbert):
    backend = load_backend("cpu", str(make_modernbert(every=3, layers=4, window=16)), driver="numpy")
    facts = backend.describe()
    assert facts["architecture"] == "ModernBERT" and facts["layers"] == "4 (GLLG; window ±8)"
    assert backend.max_tokens() == 1024 and load_tokenizer(str(backend.arch.files.directory)).default_max_tokens == 1024


def test_long_input_does_not_build_full_score_matrices(make_modernbert):
    directory = make_modernbert(layers=2, every=2, window=128, max_positions=8192)
    backend = load_backend("cpu", str(directory), driver="numpy")
    encoding = Encoding.from_ids(np.random.default_rng(0).integers(1000, 30000, size=8192))
    tracemalloc.start()
    vector = backend.embed_batch([encoding])
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert np.isfinite(vector).all() and abs(np.linalg.norm(vector) - 1) < 1e-5
    full_scores = 8192 * 8192 * 4  # one head's n × n float32 scores
    assert peak < full_scores / 4, f"peak {peak / 2**20:.0f} MiB"


def test_inputs_beyond_the_position_limit_are_truncated(make_modernbert):
    directory = make_modernbert(max_positions=64)
    tokenizer = load_tokenizer(str(directory))
    (encoding,) = tokenizer.encode(["word " * 500])
    backend = load_backend("cpu", str(directory), driver="numpy")
    assert len(encoding) == 64 and backend.embed_batch([encoding]).shape == (1, 64)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"rope_scaling": {"rope_type": "yarn", "factor": 4.0}}, "rope_scaling"),
        ({"rope_parameters": {"full_attention": {"rope_type": "linear", "rope_theta": 1e4, "factor": 2.0},
                              "sliding_attention": {"rope_type": "default", "rope_theta": 1e4}}}, "rope_type 'linear'"),
        ({"hidden_activation": "silu"}, "hidden_activation"),
        ({"layer_types": ["full_attention", "chunked_attention", "full_attention"]}, "chunked_attention"),
        ({"layer_types": ["full_attention"]}, "must list 3"),
        ({"global_attn_every_n_layers": 0, "layer_types": None}, "global_attn_every_n_layers must be"),
        ({"local_attention": None}, "local_attention"),
        ({"num_attention_heads": 3}, "even integer"),
    ],
)
def test_unsupported_options_are_named(make_modernbert, tmp_path, change, message):
    directory = tmp_path / "m"
    shutil.copytree(make_modernbert(), directory)
    config = json.loads((directory / "config.json").read_text())
    for key, value in change.items():
        if value is None:
            config.pop(key, None)
        else:
            config[key] = value
    (directory / "config.json").write_text(json.dumps(config))
    with pytest.raises(ModelLoadError, match=message):
        load_backend("cpu", str(directory), driver="numpy")


def test_missing_tensor_is_named(make_modernbert, tmp_path):
    from safetensors.numpy import load_file, save_file

    directory = tmp_path / "m"
    shutil.copytree(make_modernbert(), directory)
    tensors = load_file(str(directory / "model.safetensors"))
    del tensors["layers.1.mlp.Wi.weight"]
    save_file(tensors, str(directory / "model.safetensors"))
    with pytest.raises(ModelLoadError, match="missing the tensor 'layers.1.mlp.Wi.weight'"):
        load_backend("cpu", str(directory), driver="numpy")
