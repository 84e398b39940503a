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
from vecsift.models.arch_config import GLOBAL, LOCAL, ModernBertConfig
from vecsift.models.config import ModelFiles
from vecsift.models.weights import SafetensorsWeights


@dataclass(frozen=True)
class _Layer:
    """One layer's weights (h: hidden size, i: intermediate size); linear weights are ``(out, in)``; biases
    and layer 0's attention norm are None where the model has none."""

    kind: str  # GLOBAL or LOCAL
    attn_norm_w: Any  # (h,); None on layer 0 (identity)
    attn_norm_b: Any  # (h,)
    qkv_w: Any  # (3h, h)
    qkv_b: Any  # (3h,)
    out_w: Any  # (h, h)
    out_b: Any  # (h,)
    mlp_norm_w: Any  # (h,)
    mlp_norm_b: Any  # (h,)
    mlp_in_w: Any  # (2i, h): GeGLU's input and gate halves
    mlp_in_b: Any  # (2i,)
    mlp_out_w: Any  # (h, i)
    mlp_out_b: Any  # (h,)


def rope_tables(theta: float, head_dim: int, positions: int) -> tuple[np.ndarray, np.ndarray]:
    """cos and sin of every position's angles, float32 as transformers computes them."""
    inv_freq = (1.0 / (theta ** (np.arange(0, head_dim, 2, dtype=np.int64).astype(np.float32) / head_dim)))
    angles = np.arange(positions, dtype=np.float32)[:, None] * inv_freq.astype(np.float32)[None, :]
    return np.cos(angles), np.sin(angles)


class ModernBert(ModelArch):
    family = "ModernBERT"
    config: ModernBertConfig

    def __init__(self, files: ModelFiles, config: ModernBertConfig, weights: SafetensorsWeights,
                 driver: Driver[Any]) -> None:
        super().__init__(files, config)
        self.rope = {
            kind: tuple(driver.weight(t) for t in rope_tables(theta, config.head_dim, config.max_positions))
            for kind, theta in config.rope_thetas.items()
        }
        load = TensorLoader(weights, driver, "embeddings.tok_embeddings.weight", ("model.",))
        h = config.hidden
        self.embeddings = load.get("embeddings.tok_embeddings.weight", (config.vocab_size, h))
        self.embed_norm_w = load.get("embeddings.norm.weight", (h,))
        self.embed_norm_b = _optional(load, "embeddings.norm.bias", (h,), config.norm_bias)
        self.layers = [self._load_layer(load, n, kind) for n, kind in enumerate(config.layer_kinds)]
        self.final_norm_w = load.get("final_norm.weight", (h,))
        self.final_norm_b = _optional(load, "final_norm.bias", (h,), config.norm_bias)

    def _load_layer(self, load: TensorLoader, n: int, kind: str) -> _Layer:
        config = self.config
        h, i, p = config.hidden, config.intermediate, f"layers.{n}."
        return _Layer(
            kind=kind,
            attn_norm_w=_optional(load, p + "attn_norm.weight", (h,), n > 0),
            attn_norm_b=_optional(load, p + "attn_norm.bias", (h,), n > 0 and config.norm_bias),
            qkv_w=load.linear(p + "attn.Wqkv.weight", (3 * h, h)),
            qkv_b=_optional(load, p + "attn.Wqkv.bias", (3 * h,), config.attention_bias),
            out_w=load.linear(p + "attn.Wo.weight", (h, h)),
            out_b=_optional(load, p + "attn.Wo.bias", (h,), config.attention_bias),
            mlp_norm_w=load.get(p + "mlp_norm.weight", (h,)),
            mlp_norm_b=_optional(load, p + "mlp_norm.bias", (h,), config.norm_bias),
            mlp_in_w=load.linear(p + "mlp.Wi.weight", (2 * i, h)),
            mlp_in_b=_optional(load, p + "mlp.Wi.bias", (2 * i,), config.mlp_bias),
            mlp_out_w=load.linear(p + "mlp.Wo.weight", (h, i)),
            mlp_out_b=_optional(load, p + "mlp.Wo.bias", (h,), config.mlp_bias),
        )

    def hidden_states(self, driver: Driver[Any], batch: TokenBatch) -> Any:
        """The last hidden state of every real token, ``(total_tokens, hidden)`` (before pooling)."""
        config = self.config
        d = driver
        h = config.hidden
        x = d.layer_norm_(d.gather(self.embeddings, batch.input_ids), self.embed_norm_w, self.embed_norm_b, config.eps)
        rope = {kind: (d.gather(cos, batch.position_ids), d.gather(sin, batch.position_ids))
                for kind, (cos, sin) in self.rope.items()}
        for layer in self.layers:
            normed = x if layer.attn_norm_w is None else \
                d.layer_norm(x, layer.attn_norm_w, layer.attn_norm_b, config.eps)
            qkv = d.linear(normed, layer.qkv_w, layer.qkv_b)
            cos, sin = rope[layer.kind]
            qk = d.rope_(qkv[:, : 2 * h], cos, sin, 2 * config.heads)  # q's heads and k's heads at once
            q, k, v = qk[:, :h], qk[:, h:], qkv[:, 2 * h :]
            window = config.window if layer.kind == LOCAL else None
            context = d.attention(q, k, v, batch, config.heads, window)
            x = d.linear(context, layer.out_w, layer.out_b, residual=x)
            normed = d.layer_norm(x, layer.mlp_norm_w, layer.mlp_norm_b, config.eps)
            x = d.linear(d.geglu(d.linear(normed, layer.mlp_in_w, layer.mlp_in_b)), layer.mlp_out_w,
                         layer.mlp_out_b, residual=x)
        return d.layer_norm_(x, self.final_norm_w, self.final_norm_b, config.eps)

    def describe(self) -> dict[str, Any]:
        config = self.config
        pattern = "".join("G" if kind == GLOBAL else "L" for kind in config.layer_kinds)
        return {**super().describe(), "layers": f"{config.layers} ({pattern}; window ±{config.window})",
                "heads": config.heads}


def _optional(load: TensorLoader, name: str, shape: tuple[int, ...], present: bool) -> Any:
    """A tensor the config says the checkpoint has, else None."""
    return load.get(name, shape) if present else None
