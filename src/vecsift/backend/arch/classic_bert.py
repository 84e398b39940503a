"""`ClassicBert`: BERT-family encoders (BERT, MiniLM, BGE, E5, …).

Learned absolute positions and token types, post-LayerNorm blocks, exact GELU.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from vecsift.backend.arch.base import ModelArch, TensorLoader
from vecsift.backend.driver.base import Driver
from vecsift.backend.token_batch import TokenBatch
from vecsift.errors import EncodingError
from vecsift.models.arch_config import ClassicBertConfig
from vecsift.models.config import ModelFiles
from vecsift.models.weights import SafetensorsWeights


@dataclass(frozen=True)
class _Layer:
    """One encoder layer's weights (h: hidden size, i: intermediate size); linear weights are ``(out, in)``."""

    qkv_w: Any  # (3h, h): query, key and value projections stacked, one GEMM
    qkv_b: Any  # (3h,)
    attn_out_w: Any  # (h, h)
    attn_out_b: Any  # (h,)
    attn_norm_w: Any  # (h,)
    attn_norm_b: Any  # (h,)
    ffn_in_w: Any  # (i, h)
    ffn_in_b: Any  # (i,)
    ffn_out_w: Any  # (h, i)
    ffn_out_b: Any  # (h,)
    ffn_norm_w: Any  # (h,)
    ffn_norm_b: Any  # (h,)


class ClassicBert(ModelArch):
    family = "ClassicBert"
    config: ClassicBertConfig

    def __init__(self, files: ModelFiles, config: ClassicBertConfig, weights: SafetensorsWeights,
                 driver: Driver[Any]) -> None:
        super().__init__(files, config)
        load = TensorLoader(weights, driver, "embeddings.word_embeddings.weight", ("bert.", "model."))
        h, i = config.hidden, config.intermediate
        self.word_embeddings = load.get("embeddings.word_embeddings.weight", (config.vocab_size, h))
        self.position_embeddings = load.get("embeddings.position_embeddings.weight", (config.max_positions, h))
        self.token_type_embeddings = load.get("embeddings.token_type_embeddings.weight", (config.type_vocab_size, h))
        self.embed_norm_w = load.get("embeddings.LayerNorm.weight", (h,))
        self.embed_norm_b = load.get("embeddings.LayerNorm.bias", (h,))
        self.layers = [self._load_layer(load, f"encoder.layer.{n}.", h, i) for n in range(config.layers)]

    @staticmethod
    def _load_layer(load: TensorLoader, p: str, h: int, i: int) -> _Layer:
        projections = tuple(f"{p}attention.self.{part}." for part in ("query", "key", "value"))
        return _Layer(
            qkv_w=load.stacked(tuple(q + "weight" for q in projections), (h, h), linear=True),
            qkv_b=load.stacked(tuple(q + "bias" for q in projections), (h,)),
            attn_out_w=load.linear(p + "attention.output.dense.weight", (h, h)),
            attn_out_b=load.get(p + "attention.output.dense.bias", (h,)),
            attn_norm_w=load.get(p + "attention.output.LayerNorm.weight", (h,)),
            attn_norm_b=load.get(p + "attention.output.LayerNorm.bias", (h,)),
            ffn_in_w=load.linear(p + "intermediate.dense.weight", (i, h)),
            ffn_in_b=load.get(p + "intermediate.dense.bias", (i,)),
            ffn_out_w=load.linear(p + "output.dense.weight", (h, i)),
            ffn_out_b=load.get(p + "output.dense.bias", (h,)),
            ffn_norm_w=load.get(p + "output.LayerNorm.weight", (h,)),
            ffn_norm_b=load.get(p + "output.LayerNorm.bias", (h,)),
        )

    def hidden_states(self, driver: Driver[Any], batch: TokenBatch) -> Any:
        config = self.config
        if batch.token_type_ids.max() >= config.type_vocab_size:
            raise EncodingError(
                f"token type id {int(batch.token_type_ids.max())} is out of range: "
                f"the model has {config.type_vocab_size} token types"
            )
        d = driver
        h = config.hidden
        x = d.gather(self.word_embeddings, batch.input_ids)
        d.add_(x, d.gather(self.position_embeddings, batch.position_ids))
        d.add_(x, d.gather(self.token_type_embeddings, batch.token_type_ids))
        x = d.layer_norm_(x, self.embed_norm_w, self.embed_norm_b, config.eps)
        for layer in self.layers:
            qkv = d.linear(x, layer.qkv_w, layer.qkv_b)
            context = d.attention(qkv[:, :h], qkv[:, h : 2 * h], qkv[:, 2 * h :], batch, config.heads)
            x = d.layer_norm_(d.linear(context, layer.attn_out_w, layer.attn_out_b, residual=x),
                              layer.attn_norm_w, layer.attn_norm_b, config.eps)
            inner = d.linear_gelu(x, layer.ffn_in_w, layer.ffn_in_b)
            x = d.layer_norm_(d.linear(inner, layer.ffn_out_w, layer.ffn_out_b, residual=x),
                              layer.ffn_norm_w, layer.ffn_norm_b, config.eps)
        return x

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "layers": self.config.layers, "heads": self.config.heads}
