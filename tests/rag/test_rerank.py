"""The causal-LM reranker (Qwen3-Reranker's format, P(yes)) on a tiny random Llama built here: the prompt is the
model card's exactly, the chat-template variables reach it, and scores are P(yes) against `no`, the same in a
batch as one by one."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from helpers import tiny_llama

from smt.rag import rerank

# Qwen3's chat template, reduced to what the reranker's prompt uses (ChatML, and the empty think block that
# `enable_thinking: false` puts at the start of the answer).
QWEN3_LIKE = (
    "{% for m in messages %}{{ '<|im_start|>' + m.role + '\\n' + m.content + '<|im_end|>\\n' }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}"
    "{% if enable_thinking is defined and enable_thinking is false %}{{ '<think>\\n\\n</think>\\n\\n' }}{% endif %}"
    "{% endif %}"
)
# Qwen3-Reranker's model card: format_instruction(instruction, query, doc) between its prefix and suffix.
SYSTEM = (
    "Judge whether the Document meets the requirements based on the Query and the Instruct provided. Note that the "
    'answer can only be "yes" or "no".'
)
CARD = (
    f"<|im_start|>system\n{SYSTEM}<|im_end|>\n<|im_start|>user\n"
    "<Instruct>: Find the lamps\n<Query>: How many lamps?\n<Document>: Nadia lit twelve lamps."
    "<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\n"
)
PASSAGES = ["Nadia lit twelve lamps.", "The ferry was painted green and blue, and the river rose for days.", "x"]


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory, base_model: Path) -> Path:
    from transformers import AutoTokenizer

    out = tiny_llama(tmp_path_factory.mktemp("reranker") / "tiny", base_model)
    tokenizer = AutoTokenizer.from_pretrained(out)
    tokenizer.chat_template = QWEN3_LIKE
    tokenizer.save_pretrained(out)
    return out


@pytest.fixture(scope="module")
def reranker(folder: Path) -> rerank.CausalLMReranker:
    return rerank.CausalLMReranker(str(folder), "Find the lamps", "float32", 2, {"enable_thinking": False})


def test_the_prompt_is_the_model_cards(reranker: rerank.CausalLMReranker, folder: Path) -> None:
    assert reranker.prompt("How many lamps?", "Nadia lit twelve lamps.") == CARD
    thinking = rerank.CausalLMReranker(str(folder), "Find the lamps", "auto", 2, {})
    assert "<think>" not in thinking.prompt("How many lamps?", "Nadia lit twelve lamps.")
    thinking.tokenizer.chat_template = None  # a folder without a template: the card's ChatML text as it is
    assert thinking.prompt("How many lamps?", "Nadia lit twelve lamps.") == CARD


def test_scores_are_p_yes_against_no_and_batching_changes_nothing(reranker: rerank.CausalLMReranker) -> None:
    scores = reranker.scores("How many lamps?", PASSAGES)  # batch size 2: two passes, the first padded
    tokenizer, model = reranker.tokenizer, reranker.model
    no, yes = tokenizer.convert_tokens_to_ids("no"), tokenizer.convert_tokens_to_ids("yes")
    for passage, found in zip(PASSAGES, scores, strict=True):
        ids = tokenizer(reranker.prompt("How many lamps?", passage), add_special_tokens=False, return_tensors="pt")
        with torch.inference_mode():
            logits = model(**ids).logits[0, -1]
        assert found == pytest.approx(float(torch.softmax(logits[[no, yes]], dim=-1)[1]), abs=1e-5)
        assert 0 < found < 1
    kept = rerank.rerank(
        reranker, "How many lamps?", [{"chunk_id": str(i), "text": p} for i, p in enumerate(PASSAGES)], 2
    )
    assert [h["rerank_score"] for h in kept] == sorted((round(s, 6) for s in scores), reverse=True)[:2]
    assert {k: reranker.describe()[k] for k in ("device", "dtype")} == {"device": "cpu", "dtype": "float32"}


def test_a_causal_lm_reranker_needs_its_model_folder() -> None:
    with pytest.raises(ValueError, match=r"rag\.reranker_model"):
        rerank.load("causal_lm", "unused", None)
