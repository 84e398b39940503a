"""What a model directory says about itself: config.json and the sentence-transformers files."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vecsift.errors import ModelLoadError
from vecsift.models.resolve import resolve_model_dir

POOLING_MODES = ("mean", "cls", "max", "mean_sqrt_len")
# sentence-transformers modules that do not change the vector's direction or that we implement.
_ACCEPTED_MODULES = {"Transformer", "Pooling", "Normalize"}
_POOLING_KEYS = {
    "pooling_mode_cls_token": "cls",
    "pooling_mode_mean_tokens": "mean",
    "pooling_mode_max_tokens": "max",
    "pooling_mode_mean_sqrt_len_tokens": "mean_sqrt_len",
}


def read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as err:
        raise ModelLoadError(f"missing file {path}") from err
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ModelLoadError(f"cannot read {path}: {err}") from err


@dataclass(frozen=True)
class ModelFiles:
    """A resolved model directory and the settings read from it."""

    name: str
    directory: Path
    config: dict[str, Any]
    pooling: str
    max_seq_length: int | None  # sentence-transformers' truncation length, when configured

    @property
    def model_type(self) -> str:
        return str(self.config.get("model_type", "")).lower()

    @property
    def weights_path(self) -> Path:
        return self.directory / "model.safetensors"

    @property
    def tokenizer_path(self) -> Path:
        return self.directory / "tokenizer.json"

    def require(self, key: str) -> Any:
        """A config.json value the architecture cannot do without."""
        if key not in self.config:
            raise ModelLoadError(f"{self.directory / 'config.json'} lacks the required field {key!r}")
        return self.config[key]


def _pooling_from_sentence_transformers(directory: Path) -> str:
    modules_path = directory / "modules.json"
    if not modules_path.is_file():
        return "mean"  # what sentence-transformers builds for a plain Hugging Face model
    modules = read_json(modules_path)
    pooling = "mean"
    for module in modules:
        kind = str(module.get("type", "")).rsplit(".", 1)[-1]
        if kind not in _ACCEPTED_MODULES:
            raise ModelLoadError(
                f"{modules_path} uses the sentence-transformers module {module.get('type')!r}, "
                f"which vecsift does not implement (supported: {sorted(_ACCEPTED_MODULES)})"
            )
        if kind == "Pooling":
            pooling = _pooling_mode(directory / module.get("path", "") / "config.json")
    return pooling


def _pooling_mode(path: Path) -> str:
    config = read_json(path)
    if "pooling_mode" in config:
        mode = {"mean_tokens": "mean", "cls_token": "cls", "max_tokens": "max"}.get(
            config["pooling_mode"], config["pooling_mode"]
        )
        chosen = [mode]
    else:
        chosen = [mode for key, mode in _POOLING_KEYS.items() if config.get(key)]
    unknown = [k for k, v in config.items() if k.startswith("pooling_mode_") and v and k not in _POOLING_KEYS]
    if unknown or len(chosen) != 1 or chosen[0] not in POOLING_MODES:
        raise ModelLoadError(
            f"{path}: vecsift needs exactly one pooling mode of {list(POOLING_MODES)}, "
            f"the file asks for {chosen + unknown or 'none'}"
        )
    return chosen[0]


def load_model_files(model: str) -> ModelFiles:
    """Resolve ``model`` and read its configuration; errors name the file at fault."""
    directory = resolve_model_dir(model)
    config = read_json(directory / "config.json")
    if not isinstance(config, dict):
        raise ModelLoadError(f"{directory / 'config.json'} is not a JSON object")
    for required in ("model.safetensors", "tokenizer.json"):
        if not (directory / required).is_file():
            hint = ""
            if required == "model.safetensors" and any(directory.glob("*.bin")):
                hint = (
                    " It has a pickled PyTorch checkpoint (.bin), which vecsift refuses to load because "
                    "unpickling runs arbitrary code; convert it to safetensors first "
                    "(e.g. `safetensors.torch.save_file(torch.load(path), 'model.safetensors')` on a trusted file)."
                )
            raise ModelLoadError(f"model directory {directory} has no {required}.{hint}")
    st_config_path = directory / "sentence_bert_config.json"
    max_seq_length = None
    if st_config_path.is_file():
        value = read_json(st_config_path).get("max_seq_length")
        max_seq_length = int(value) if value else None
    return ModelFiles(
        name=str(model),
        directory=directory,
        config=config,
        pooling=_pooling_from_sentence_transformers(directory),
        max_seq_length=max_seq_length,
    )


@dataclass(frozen=True)
class Prompts:
    """Texts put before queries and documents, as the model's sentence-transformers config asks."""

    query: str = ""
    document: str = ""
    named: tuple[tuple[str, str], ...] = ()  # every prompt of the config by name (TEI's ``prompt_name``)


def read_prompts(directory: Path) -> Prompts:
    """``config_sentence_transformers.json``'s ``prompts``: the query prompt is ``query`` and the document
    prompt ``document`` (or ``passage``); ``default_prompt_name`` fills in for a missing one. No file: none."""
    path = directory / "config_sentence_transformers.json"
    if not path.is_file():
        return Prompts()
    config = read_json(path)
    prompts = config.get("prompts") if isinstance(config, dict) else None
    if not isinstance(prompts, dict):
        return Prompts()
    default = prompts.get(config.get("default_prompt_name") or "", "")

    def pick(*names: str) -> str:
        value = next((prompts[n] for n in names if isinstance(prompts.get(n), str)), default)
        return value if isinstance(value, str) else ""

    named = tuple((k, v) for k, v in prompts.items() if isinstance(k, str) and isinstance(v, str))
    return Prompts(query=pick("query"), document=pick("document", "passage", "corpus"), named=named)
