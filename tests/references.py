"""Reference computations the tests compare vecsift against (transformers' own models) and the
sentence-transformers files that make a random checkpoint a pooled embedder."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np


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
