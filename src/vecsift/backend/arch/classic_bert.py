"""`ClassicBert`: BERT-family encoders (BERT, MiniLM, BGE, E5, …).

Learned absolute positions and token types, post-LayerNorm blocks, exact GELU.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from vecsift.backend.arch.base import ModelArch, TensorLoader
from vecsift.backend.driver.base import Driver
from vecsift.backend.token_batch import TokenBatch
from vecsift.errors import EncodingError, ModelLoadError
from vecsift.models.config import ModelFiles
from vecsift.models.weights import SafetensorsWeights

# Activations that are exactly erf-GELU; tanh approximations are different functions.
_EXACT_GELU = {"gelu", "gelu_python"}


@dataclass(frozen=True)
class _Layer:
    qkv_w: Any  # query, key and value projections stacked: one GEMM
    qkv_b: Any
    attn_out_w: Any
    attn_out_b: Any
    attn_norm_w: Any
    attn_norm_b: Any
    ffn_in_w: Any
    ffn_in_b: Any
    ffn_out_w: Any
    ffn_out_b: Any
    ffn_norm_w: Any
    ffn_norm_b: Any


class ClassicBert(ModelArch):
    family = "ClassicBert"

    def __init__(self, files: ModelFiles, weights: SafetensorsWeights, driver: Driver[Any]) -> None:
        hidden = int(files.require("hidden_size"))
        super().__init__(files, dim=hidden, vocab_size=int(files.require("vocab_size")),
                         max_positions=int(files.config.get("max_position_embeddings", 512)))
        self.num_heads = int(files.require("num_attention_heads"))
        self.num_layers = int(files.require("num_hidden_layers"))
        intermediate = int(files.require("intermediate_size"))
        self.type_vocab_size = int(files.config.get("type_vocab_size", 2))
        self.eps = float(files.config.get("layer_norm_eps", 1e-12))
        activation = files.config.get("hidden_act", "gelu")
        if activation not in _EXACT_GELU:
            raise ModelLoadError(f"ClassicBert supports hidden_act {sorted(_EXACT_GELU)}, config has {activation!r}")
        position_type = files.config.get("position_embedding_type", "absolute")
        if position_type != "absolute":
            raise ModelLoadError(
                f"ClassicBert supports position_embedding_type 'absolute', config has {position_type!r}"
            )
        if hidden % self.num_heads:
            raise ModelLoadError(f"hidden_size {hidden} is not a multiple of num_attention_heads {self.num_heads}")

        load = TensorLoader(weights, driver, "embeddings.word_embeddings.weight", ("bert.", "model."))
        h, i = hidden, intermediate
        self.word_embeddings = load.get("embeddings.word_embeddings.weight", (self.vocab_size, h))
        self.position_embeddings = load.get("embeddings.position_embeddings.weight", (self.max_positions, h))
        self.token_type_embeddings = load.get("embeddings.token_type_embeddings.weight", (self.type_vocab_size, h))
        self.embed_norm_w = load.get("embeddings.LayerNorm.weight", (h,))
        self.embed_norm_b = load.get("embeddings.LayerNorm.bias", (h,))
        self.layers = []
        for n in range(self.num_layers):
            p = f"encoder.layer.{n}."
            projections = tuple(f"{p}attention.self.{part}." for part in ("query", "key", "value"))
            self.layers.append(
                _Layer(
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
            )

    def hidden_states(self, driver: Driver[Any], batch: TokenBatch) -> Any:
        if batch.token_type_ids.max() >= self.type_vocab_size:
            raise EncodingError(
                f"token type id {int(batch.token_type_ids.max())} is out of range: "
                f"the model has {self.type_vocab_size} token types"
            )
        d = driver
        h = self.dim
        x = d.gather(self.word_embeddings, batch.input_ids)
        d.add_(x, d.gather(self.position_embeddings, batch.position_ids))
        d.add_(x, d.gather(self.token_type_embeddings, batch.token_type_ids))
        x = d.layer_norm_(x, self.embed_norm_w, self.embed_norm_b, self.eps)
        for layer in self.layers:
            qkv = d.linear(x, layer.qkv_w, layer.qkv_b)
            context = d.attention(qkv[:, :h], qkv[:, h : 2 * h], qkv[:, 2 * h :], batch, self.num_heads)
            x = d.layer_norm_(d.linear(context, layer.attn_out_w, layer.attn_out_b, residual=x),
                              layer.attn_norm_w, layer.attn_norm_b, self.eps)
            inner = d.linear_gelu(x, layer.ffn_in_w, layer.ffn_in_b)
            x = d.layer_norm_(d.linear(inner, layer.ffn_out_w, layer.ffn_out_b, residual=x),
                              layer.ffn_norm_w, layer.ffn_norm_b, self.eps)
        return x

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "layers": self.num_layers, "heads": self.num_heads}
