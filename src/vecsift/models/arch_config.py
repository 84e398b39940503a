"""Typed, validated configurations of the supported architectures, read from a model's config.json.

Each architecture's forward pass takes its config ready-made and only loads weights; the position limit
(the longest input, which the tokenizer truncates to and the backend enforces) comes from here alone.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from vecsift.errors import ModelLoadError
from vecsift.models.config import ModelFiles

#: activations that are exactly erf-GELU (tanh approximations are different functions)
EXACT_GELU = frozenset({"gelu", "gelu_python"})
#: ModernBERT's layer kinds, as transformers ≥ 5 names them in ``layer_types``
GLOBAL, LOCAL = "full_attention", "sliding_attention"
_DEFAULT_THETA = {GLOBAL: 160_000.0, LOCAL: 10_000.0}


def _exact_gelu(family: str, key: str, config: dict[str, Any]) -> None:
    activation = config.get(key, "gelu")
    if activation not in EXACT_GELU:
        raise ModelLoadError(f"{family} supports {key} {sorted(EXACT_GELU)}, config has {activation!r}")


@dataclass(frozen=True)
class EncoderShape:
    """What every supported encoder's config says about its size."""

    hidden: int
    heads: int
    layers: int
    intermediate: int
    vocab_size: int
    #: the position limit: longest input the model accepts
    max_positions: int


@dataclass(frozen=True)
class ClassicBertConfig(EncoderShape):
    """BERT-family encoders: learned absolute positions and token types, post-LayerNorm, exact GELU."""

    type_vocab_size: int
    eps: float

    @classmethod
    def from_files(cls, files: ModelFiles) -> ClassicBertConfig:
        config = files.config
        _exact_gelu("ClassicBert", "hidden_act", config)
        position_type = config.get("position_embedding_type", "absolute")
        if position_type != "absolute":
            raise ModelLoadError(f"ClassicBert supports position_embedding_type 'absolute', config has "
                                 f"{position_type!r}")
        made = cls(hidden=int(files.require("hidden_size")), heads=int(files.require("num_attention_heads")),
                   layers=int(files.require("num_hidden_layers")),
                   intermediate=int(files.require("intermediate_size")), vocab_size=int(files.require("vocab_size")),
                   max_positions=int(config.get("max_position_embeddings", 512)),
                   type_vocab_size=int(config.get("type_vocab_size", 2)),
                   eps=float(config.get("layer_norm_eps", 1e-12)))
        if made.hidden % made.heads:
            raise ModelLoadError(f"hidden_size {made.hidden} is not a multiple of num_attention_heads {made.heads}")
        return made


@dataclass(frozen=True)
class ModernBertConfig(EncoderShape):
    """ModernBERT: RoPE (a theta per layer kind), alternating global and sliding-window layers, GeGLU,
    pre-norm blocks, optional biases. Reads both config formats in the wild: the original
    (``global_rope_theta``, ``local_rope_theta``, ``global_attn_every_n_layers``) and the one
    transformers ≥ 5 writes (``layer_types``, ``rope_parameters``)."""

    #: each sliding-window layer attends to ±window positions (half of ``local_attention``)
    window: int
    eps: float
    norm_bias: bool
    attention_bias: bool
    mlp_bias: bool
    #: GLOBAL or LOCAL, one per layer
    layer_kinds: tuple[str, ...]
    #: RoPE base per layer kind
    rope_thetas: dict[str, float]

    @property
    def head_dim(self) -> int:
        return self.hidden // self.heads

    @classmethod
    def from_files(cls, files: ModelFiles) -> ModernBertConfig:
        config = files.config
        _exact_gelu("ModernBERT", "hidden_activation", config)
        layers = int(files.require("num_hidden_layers"))
        made = cls(hidden=int(files.require("hidden_size")), heads=int(files.require("num_attention_heads")),
                   layers=layers, intermediate=int(files.require("intermediate_size")),
                   vocab_size=int(files.require("vocab_size")),
                   max_positions=int(files.require("max_position_embeddings")),
                   window=int(files.require("local_attention")) // 2, eps=float(config.get("norm_eps", 1e-5)),
                   norm_bias=bool(config.get("norm_bias", False)),
                   attention_bias=bool(config.get("attention_bias", False)),
                   mlp_bias=bool(config.get("mlp_bias", False)),
                   layer_kinds=tuple(_layer_kinds(config, layers)), rope_thetas=_rope_thetas(config))
        if made.hidden % made.heads or made.head_dim % 2:
            raise ModelLoadError(f"hidden_size {made.hidden} / num_attention_heads {made.heads} must be an even "
                                 "integer")
        return made


def _layer_kinds(config: dict[str, Any], num_layers: int) -> list[str]:
    """Global or local per layer, from ``layer_types`` or ``global_attn_every_n_layers``."""
    if config.get("layer_types") is not None:
        kinds = list(config["layer_types"])
        unknown = sorted(set(kinds) - {GLOBAL, LOCAL})
        if unknown or len(kinds) != num_layers:
            raise ModelLoadError(
                f"config layer_types must list {num_layers} of {[GLOBAL, LOCAL]}, got {len(kinds)} with {unknown}"
            )
        return kinds
    every = int(config.get("global_attn_every_n_layers", 3))
    if every < 1:
        raise ModelLoadError(f"global_attn_every_n_layers must be ≥ 1, config has {every}")
    return [LOCAL if i % every else GLOBAL for i in range(num_layers)]


def _rope_thetas(config: dict[str, Any]) -> dict[str, float]:
    """RoPE base per layer kind; only plain RoPE is supported, any scaling is refused by name."""
    if config.get("rope_scaling"):
        raise ModelLoadError(f"config option rope_scaling={config['rope_scaling']!r} is not supported (plain RoPE "
                             "only)")
    parameters = config.get("rope_parameters") or {}
    thetas = {}
    for kind, legacy in ((GLOBAL, "global_rope_theta"), (LOCAL, "local_rope_theta")):
        entry = parameters.get(kind) or {}
        rope_type = entry.get("rope_type", "default")
        if rope_type != "default":
            raise ModelLoadError(f"config rope_parameters[{kind!r}] has rope_type {rope_type!r}; only 'default' RoPE")
        thetas[kind] = float(entry.get("rope_theta", config.get(legacy, _DEFAULT_THETA[kind])))
    return thetas


ArchConfig = ClassicBertConfig | ModernBertConfig
#: config.json ``model_type`` → its typed configuration
ARCH_CONFIGS: dict[str, type[ClassicBertConfig] | type[ModernBertConfig]] = {
    "bert": ClassicBertConfig, "modernbert": ModernBertConfig}


def arch_config(files: ModelFiles) -> ArchConfig:
    """The typed configuration of ``files``' architecture; an unsupported ``model_type`` is a ModelLoadError."""
    config_class = ARCH_CONFIGS.get(files.model_type)
    if config_class is None:
        raise ModelLoadError(f"model_type {files.model_type!r} in {files.directory / 'config.json'} is not "
                             f"supported; supported: {sorted(ARCH_CONFIGS)}")
    return config_class.from_files(files)
