"""`ModernBert`: ModernBERT encoders (modernbert-embed-base, gte-modernbert-base, …).

No position embeddings but RoPE (separate theta for global and local layers),
alternating global and sliding-window attention, GeGLU MLP, pre-norm blocks
without biases by default, and a final norm. Reads both config formats in the
wild: the original (``global_rope_theta``, ``local_rope_theta``,
``global_attn_every_n_layers``) and the one transformers ≥ 5 writes
(``layer_types``, ``rope_parameters``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from vecsift.backend.arch.base import ModelArch, TensorLoader
from vecsift.backend.driver.base import Driver
from vecsift.backend.token_batch import TokenBatch
from vecsift.errors import ModelLoadError
from vecsift.models.config import ModelFiles
from vecsift.models.weights import SafetensorsWeights

GLOBAL, LOCAL = "full_attention", "sliding_attention"
_EXACT_GELU = {"gelu", "gelu_python"}
_DEFAULT_THETA = {GLOBAL: 160_000.0, LOCAL: 10_000.0}


@dataclass(frozen=True)
class _Layer:
    kind: str  # GLOBAL or LOCAL
    attn_norm_w: Any  # None on layer 0 (identity)
    attn_norm_b: Any
    qkv_w: Any
    qkv_b: Any
    out_w: Any
    out_b: Any
    mlp_norm_w: Any
    mlp_norm_b: Any
    mlp_in_w: Any
    mlp_in_b: Any
    mlp_out_w: Any
    mlp_out_b: Any


def layer_kinds(files: ModelFiles, num_layers: int) -> list[str]:
    """Global or local per layer, from ``layer_types`` or ``global_attn_every_n_layers``."""
    config = files.config
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


def rope_thetas(files: ModelFiles) -> dict[str, float]:
    """RoPE base per layer kind; only plain RoPE is supported, any scaling is refused by name."""
    config = files.config
    for option in ("rope_scaling",):
        if config.get(option):
            raise ModelLoadError(f"config option {option}={config[option]!r} is not supported (plain RoPE only)")
    parameters = config.get("rope_parameters") or {}
    thetas = {}
    for kind, legacy in ((GLOBAL, "global_rope_theta"), (LOCAL, "local_rope_theta")):
        entry = parameters.get(kind) or {}
        rope_type = entry.get("rope_type", "default")
        if rope_type != "default":
            raise ModelLoadError(f"config rope_parameters[{kind!r}] has rope_type {rope_type!r}; only 'default' RoPE")
        thetas[kind] = float(entry.get("rope_theta", config.get(legacy, _DEFAULT_THETA[kind])))
    return thetas


def rope_tables(theta: float, head_dim: int, positions: int) -> tuple[np.ndarray, np.ndarray]:
    """cos and sin of every position's angles, float32 as transformers computes them."""
    inv_freq = (1.0 / (theta ** (np.arange(0, head_dim, 2, dtype=np.int64).astype(np.float32) / head_dim)))
    angles = np.arange(positions, dtype=np.float32)[:, None] * inv_freq.astype(np.float32)[None, :]
    return np.cos(angles), np.sin(angles)


class ModernBert(ModelArch):
    family = "ModernBERT"

    def __init__(self, files: ModelFiles, weights: SafetensorsWeights, driver: Driver[Any]) -> None:
        config = files.config
        hidden = int(files.require("hidden_size"))
        super().__init__(files, dim=hidden, vocab_size=int(files.require("vocab_size")),
                         max_positions=int(files.require("max_position_embeddings")))
        self.num_heads = int(files.require("num_attention_heads"))
        self.num_layers = int(files.require("num_hidden_layers"))
        intermediate = int(files.require("intermediate_size"))
        self.window = int(files.require("local_attention")) // 2
        self.eps = float(config.get("norm_eps", 1e-5))
        norm_bias, attention_bias, mlp_bias = (bool(config.get(k, False))
                                               for k in ("norm_bias", "attention_bias", "mlp_bias"))
        activation = config.get("hidden_activation", "gelu")
        if activation not in _EXACT_GELU:
            raise ModelLoadError(
                f"ModernBERT supports hidden_activation {sorted(_EXACT_GELU)}, config has {activation!r}"
            )
        if hidden % self.num_heads or (hidden // self.num_heads) % 2:
            raise ModelLoadError(f"hidden_size {hidden} / num_attention_heads {self.num_heads} must be an even integer")
        head_dim = hidden // self.num_heads
        self.kinds = layer_kinds(files, self.num_layers)
        self.rope = {
            kind: tuple(driver.weight(t) for t in rope_tables(theta, head_dim, self.max_positions))
            for kind, theta in rope_thetas(files).items()
        }

        load = TensorLoader(weights, driver, "embeddings.tok_embeddings.weight", ("model.",))
        h, i = hidden, intermediate

        def optional(name: str, shape: tuple[int, ...], present: bool) -> Any:
            return load.get(name, shape) if present else None

        self.embeddings = load.get("embeddings.tok_embeddings.weight", (self.vocab_size, h))
        self.embed_norm_w = load.get("embeddings.norm.weight", (h,))
        self.embed_norm_b = optional("embeddings.norm.bias", (h,), norm_bias)
        self.layers = []
        for n, kind in enumerate(self.kinds):
            p = f"layers.{n}."
            self.layers.append(_Layer(
                kind=kind,
                attn_norm_w=optional(p + "attn_norm.weight", (h,), n > 0),
                attn_norm_b=optional(p + "attn_norm.bias", (h,), n > 0 and norm_bias),
                qkv_w=load.linear(p + "attn.Wqkv.weight", (3 * h, h)),
                qkv_b=optional(p + "attn.Wqkv.bias", (3 * h,), attention_bias),
                out_w=load.linear(p + "attn.Wo.weight", (h, h)),
                out_b=optional(p + "attn.Wo.bias", (h,), attention_bias),
                mlp_norm_w=load.get(p + "mlp_norm.weight", (h,)),
                mlp_norm_b=optional(p + "mlp_norm.bias", (h,), norm_bias),
                mlp_in_w=load.linear(p + "mlp.Wi.weight", (2 * i, h)),
                mlp_in_b=optional(p + "mlp.Wi.bias", (2 * i,), mlp_bias),
                mlp_out_w=load.linear(p + "mlp.Wo.weight", (h, i)),
                mlp_out_b=optional(p + "mlp.Wo.bias", (h,), mlp_bias),
            ))
        self.final_norm_w = load.get("final_norm.weight", (h,))
        self.final_norm_b = optional("final_norm.bias", (h,), norm_bias)

    def hidden_states(self, driver: Driver[Any], batch: TokenBatch) -> Any:
        """The last hidden state of every real token, ``(total_tokens, hidden)`` (before pooling)."""
        d = driver
        h = self.dim
        x = d.layer_norm_(d.gather(self.embeddings, batch.input_ids), self.embed_norm_w, self.embed_norm_b, self.eps)
        rope = {kind: (d.gather(cos, batch.position_ids), d.gather(sin, batch.position_ids))
                for kind, (cos, sin) in self.rope.items()}
        for layer in self.layers:
            normed = x if layer.attn_norm_w is None else \
                d.layer_norm(x, layer.attn_norm_w, layer.attn_norm_b, self.eps)
            qkv = d.linear(normed, layer.qkv_w, layer.qkv_b)
            cos, sin = rope[layer.kind]
            qk = d.rope_(qkv[:, : 2 * h], cos, sin, 2 * self.num_heads)  # q's heads and k's heads at once
            q, k, v = qk[:, :h], qk[:, h:], qkv[:, 2 * h :]
            window = self.window if layer.kind == LOCAL else None
            context = d.attention(q, k, v, batch, self.num_heads, window)
            x = d.linear(context, layer.out_w, layer.out_b, residual=x)
            normed = d.layer_norm(x, layer.mlp_norm_w, layer.mlp_norm_b, self.eps)
            x = d.linear(d.geglu(d.linear(normed, layer.mlp_in_w, layer.mlp_in_b)), layer.mlp_out_w,
                         layer.mlp_out_b, residual=x)
        return d.layer_norm_(x, self.final_norm_w, self.final_norm_b, self.eps)

    def describe(self) -> dict[str, Any]:
        pattern = "".join("G" if kind == GLOBAL else "L" for kind in self.kinds)
        return {**super().describe(), "layers": f"{self.num_layers} ({pattern}; window ±{self.window})",
                "heads": self.num_heads}
