"""Model FLOPs for MFU, counted from a config: checked by hand for SmolLM2-135M at 1,024 tokens, against the
weights a model built from the config really multiplies, and against torch's own FLOP counter on a training
step of a small random Llama."""

from __future__ import annotations

import json

import pytest
import torch
from helpers import ROOT
from transformers import LlamaConfig, LlamaForCausalLM

from smt.train import flops

SMOLLM2_135M = {  # HuggingFaceTB/SmolLM2-135M-Instruct's config.json (the shape keys)
    "model_type": "llama",
    "hidden_size": 576,
    "intermediate_size": 1536,
    "num_hidden_layers": 30,
    "num_attention_heads": 9,
    "num_key_value_heads": 3,
    "head_dim": 64,
    "vocab_size": 49152,
    "tie_word_embeddings": True,
}


def test_smollm2_at_1024_tokens_by_hand() -> None:
    s = flops.shape(SMOLLM2_135M)
    # Per layer: q and o 576 x 576 each, k and v 576 x (3 x 64) each, MLP 3 x 576 x 1536.
    per_layer = 2 * 576 * 576 + 2 * 576 * 192 + 3 * 576 * 1536
    assert per_layer == 3_538_944
    lm_head = 49152 * 576  # tied: the input embedding is this same matrix, counted once
    assert s.matmul_weights() == 30 * per_layer + lm_head == 134_479_872
    # Attention: QK^T and AV, 2 FLOPs per multiply-add, 9 heads x 64 dimensions, 1,024 keys per query.
    attention = 2 * 2 * 30 * 9 * 64 * 1024
    assert flops.forward_per_token(s, 1024) == 2 * 134_479_872 + attention == 339_738_624
    assert flops.training_per_token(s, 1024) == 3 * 339_738_624 == 1_019_215_872
    six_n = 6 * s.parameters()
    assert flops.training_per_token(s, 1024) / six_n == pytest.approx(1.263, abs=1e-3)  # 6N misses 21% of it
    causal = 3 * (2 * 134_479_872 + 2 * 2 * 30 * 9 * 64 * 1025 / 2)
    assert flops.training_per_token(s, 1024, causal=True) == causal


def test_an_untied_input_embedding_does_no_matmul() -> None:
    config = json.loads((ROOT / "bench/configs/llama-1b.json").read_text())
    s = flops.shape(config)
    assert not s.tied and s.parameters() - s.matmul_weights() == 49152 * 2048
    tied = flops.shape({**config, "tie_word_embeddings": True})
    assert tied.matmul_weights() == s.matmul_weights() and tied.parameters() == tied.matmul_weights()


@pytest.mark.parametrize("name", ["llama-1b.json", "llama-tiny.json"])
def test_matmul_weights_are_the_models_linear_layers(name: str) -> None:
    """Built on the meta device: no memory, the real module tree."""
    config = json.loads((ROOT / "bench/configs" / name).read_text())
    with torch.device("meta"):
        model = LlamaForCausalLM(LlamaConfig(**config))
    linear = sum(m.weight.numel() for m in model.modules() if isinstance(m, torch.nn.Linear))
    everything = sum(p.numel() for n, p in model.named_parameters() if "norm" not in n)
    s = flops.shape(config)
    assert s.matmul_weights() == linear and s.parameters() == everything


def test_a_training_step_does_what_torchs_flop_counter_counts() -> None:
    """Eager attention does the full score matrix as matmuls; forward + backward of a random tiny Llama."""
    from torch.utils.flop_counter import FlopCounterMode

    config = json.loads((ROOT / "bench/configs/llama-tiny.json").read_text())
    torch.manual_seed(0)
    model = LlamaForCausalLM(LlamaConfig(**config, attn_implementation="eager"))
    batch, seq = 2, 48
    ids = torch.randint(0, config["vocab_size"], (batch, seq))
    with FlopCounterMode(display=False) as counter:
        model(input_ids=ids, labels=ids).loss.backward()
    counted = counter.get_total_flops()
    assert counted == flops.training_per_token(flops.shape(config), seq) * batch * seq


def test_describe_records_the_formula() -> None:
    found = flops.describe(flops.shape(SMOLLM2_135M), 1024)
    assert found["formula"] == flops.FORMULA and "attended" in found["formula"]
    assert found["training_flops_per_token"] == 1_019_215_872 and found["six_n"] == 6 * 134_479_872
