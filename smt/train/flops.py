"""Model FLOPs of training a decoder-only transformer, counted from its config.json, for MFU.

6N is the usual shorthand: 2 FLOPs per parameter per token forward, twice that backward. It is off in two ways
that matter for small models and long sequences: an untied input embedding is a table lookup, not a matmul, so
its parameters do no FLOPs; and attention's two matmuls (scores QK^T and the weighted sum with V) have no
parameters at all. Counted here, per token of a sequence of `seq_len` tokens:

    forward = 2 * (matmul weights) + 2 * 2 * layers * heads * head_dim * attended
    training = 3 * forward      (backward = 2 x forward; activation recomputation is not model FLOPs)

with matmul weights = per layer q, k, v, o and the MLP's matrices, plus the LM head (vocab x hidden, counted once
whether or not it is tied to the input embedding); norms, biases, softmax and activations are elementwise and
left out. `attended` is the number of keys each query is scored against: `seq_len` in PaLM's convention (the
full score matrix, as MFU is usually reported), or (seq_len + 1) / 2 on average when only the causal half is
counted (what a causal flash-attention kernel computes).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

FORMULA = (
    "training FLOPs/token = 3 x (2 x matmul weights + 4 x layers x heads x head_dim x attended); matmul weights = "
    "layers x (q + k + v + o + MLP matrices) + vocab x hidden (the LM head; an untied input embedding does no "
    "matmul); attended = seq_len (full score matrix, PaLM's MFU convention) or (seq_len + 1) / 2 (causal half)"
)


@dataclass(frozen=True)
class Shape:
    """What the FLOP count needs from a decoder's config."""

    layers: int
    hidden: int
    heads: int
    kv_heads: int
    head_dim: int
    intermediate: int
    vocab: int
    tied: bool
    mlp_matrices: int = 3  # gated MLP (SwiGLU: gate, up, down); 2 for a plain up/down MLP

    def attention_weights(self) -> int:
        """q, k, v and o projections of one layer."""
        q = self.hidden * self.heads * self.head_dim
        kv = 2 * self.hidden * self.kv_heads * self.head_dim
        return 2 * q + kv

    def matmul_weights(self) -> int:
        """Weights that take part in a matmul once per token: every layer's projections and the LM head."""
        mlp = self.mlp_matrices * self.hidden * self.intermediate
        return self.layers * (self.attention_weights() + mlp) + self.vocab * self.hidden

    def parameters(self) -> int:
        """All weights without norms and biases: the matmul weights plus an untied input embedding."""
        return self.matmul_weights() + (0 if self.tied else self.vocab * self.hidden)


def text_config(config: dict[str, Any]) -> dict[str, Any]:
    """The language model's part of a config (multimodal configs nest it under `text_config`)."""
    return config.get("text_config") or config


def shape(config: dict[str, Any]) -> Shape:
    """The shape of a Llama-family decoder (Llama, Mistral, Qwen2/3, SmolLM: gated MLP) from its config.json."""
    c = text_config(config)
    heads = c["num_attention_heads"]
    return Shape(
        layers=c["num_hidden_layers"],
        hidden=c["hidden_size"],
        heads=heads,
        kv_heads=c.get("num_key_value_heads") or heads,
        head_dim=c.get("head_dim") or c["hidden_size"] // heads,
        intermediate=c["intermediate_size"],
        vocab=c["vocab_size"],
        tied=bool(c.get("tie_word_embeddings", False)),
    )


def read_shape(model: str | Path) -> Shape:
    """The shape of the model in a Hugging Face folder (or a config.json file)."""
    path = Path(model)
    return shape(json.loads((path / "config.json" if path.is_dir() else path).read_text()))


def attended(seq_len: int, causal: bool) -> float:
    return (seq_len + 1) / 2 if causal else float(seq_len)


def forward_per_token(s: Shape, seq_len: int, causal: bool = False) -> float:
    attention = 4 * s.layers * s.heads * s.head_dim * attended(seq_len, causal)
    return 2 * s.matmul_weights() + attention


def training_per_token(s: Shape, seq_len: int, causal: bool = False) -> float:
    """Model FLOPs of one training token (forward and backward) in sequences of `seq_len` tokens."""
    return 3 * forward_per_token(s, seq_len, causal)


def describe(s: Shape, seq_len: int) -> dict[str, Any]:
    """The count and its parts, for a results file: what the MFU figure was computed from."""
    n = s.parameters()
    return {
        "formula": FORMULA,
        "seq_len": seq_len,
        "matmul_weights": s.matmul_weights(),
        "parameters_without_norms": n,
        "training_flops_per_token": training_per_token(s, seq_len),
        "training_flops_per_token_causal": training_per_token(s, seq_len, causal=True),
        "six_n": 6 * n,
    }
