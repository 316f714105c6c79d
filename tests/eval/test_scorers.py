"""The multiple-choice scorers on the embedded base model and the demo's 80 questions, against truths computed
apart from them: the letter prompt shows every option; the base model, which cannot know the fictional demo,
scores chance by letter; the letter scores do not depend on the batch; option_loglik gives the cloze scorer's
numbers on the demo's first 40 questions (`loglik` before it was renamed: 7 of 40, 17.5%, as measured on the
embedded default when the demo had those 40) and each option's
score is its tokens' mean log-probability computed one sequence at a time; the model's chat-template variables
reach every prompt a scorer or the judge writes."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from helpers import ROOT, tiny_llama

from smt import benchmarks, inference
from smt.eval import letter, option_loglik, scorers, stats
from smt.eval.framing import framed_question
from smt.synth.generation import Request

CHANCE = 0.25  # every demo question has four options


@pytest.fixture(scope="module")
def demo() -> tuple[list[dict[str, Any]], list[str]]:
    loaded = benchmarks.load("demo", {"source": str(ROOT / "smt/benchmarks/demo")})
    docs = {d["doc_id"]: d for d in loaded.documents}
    questions = [{**q, "status": "ok"} for q in loaded.questions]
    return questions, [framed_question(q["question"], docs.get(q["doc_id"])) for q in questions]


@pytest.fixture(scope="module")
def loaded(base_model: Path) -> tuple[Any, Any]:
    return inference.load_causal_lm(str(base_model), "cpu", "float32")


def test_the_letter_prompt_lists_every_option_and_ends_where_the_letter_comes(loaded, demo) -> None:
    _, tokenizer = loaded
    options = ["Both A and B", "A lighthouse keeper", "Neither of them", "The river council", "Nobody at all"]
    prompt = letter.build_prompt(tokenizer, "Who lit the lamp?", options, ["An excerpt about the lamp."])
    lines = prompt.splitlines()
    for mark, option in zip("ABCDE", options, strict=True):
        assert f"{mark}. {option}" in lines  # each option on its own line, after its letter
    assert lines.index("A. Both A and B") < lines.index("E. Nobody at all")  # in the benchmark's order
    assert "F. " not in prompt and "An excerpt about the lamp." in prompt and "Who lit the lamp?" in prompt
    assert prompt.endswith("<|im_start|>assistant\nAnswer:")  # the model's turn, opened with the cue
    questions, framed = demo
    for q, f in zip(questions, framed, strict=True):
        shown = letter.build_prompt(tokenizer, f, q["options"])
        assert all(f"{mark}. {o}" in shown for mark, o in zip("ABCD", q["options"], strict=True))
    # Each letter is compared as the next token, with and without the leading space.
    for mark, ids in zip("ABCDE", letter.letter_tokens(tokenizer, 5), strict=True):
        assert {tokenizer.decode([i]) for i in ids} == {mark, f" {mark}"}


@pytest.fixture(scope="module")
def by_letter(base_model: Path, demo) -> list[dict[str, Any]]:
    questions, framed = demo
    exact = scorers.Model(str(base_model), dtype="float32")  # the truths below are float32's
    records, where = scorers.score_letter(exact, questions, framed, [[]] * len(questions))
    assert where == {"device": "cpu", "dtype": "float32"}
    return records


def test_the_base_models_letter_accuracy_on_the_demo_is_chance_within_its_interval(by_letter) -> None:
    outcomes = [r["correct"] for r in by_letter]
    low, high = stats.bootstrap_ci(outcomes, 1000, seed=0)
    assert len(outcomes) == 80 and low <= CHANCE <= high, (sum(outcomes), low, high)
    # It answers with letters (most of its next-token probability is on A-D), it does not know the answers.
    assert min(r["letter_mass"] for r in by_letter) > 0.5
    assert all(r["predicted"] in "ABCD" and r["correct"] == (r["predicted"] == r["gold"]) for r in by_letter)


def test_letter_scores_are_those_of_each_prompt_run_alone(loaded, demo, by_letter) -> None:
    model, tokenizer = loaded
    questions, framed = demo
    ids = letter.letter_tokens(tokenizer, 4)
    for q, f, record in list(zip(questions, framed, by_letter, strict=True))[:4]:
        prompt = letter.build_prompt(tokenizer, f, q["options"])
        encoded = tokenizer(prompt, return_tensors="pt", add_special_tokens=False)
        with torch.inference_mode():
            logprobs = torch.log_softmax(model(**encoded).logits[0, -1].float(), dim=-1)
        alone = [float(torch.logsumexp(logprobs[i], dim=0)) for i in ids]
        assert record["scores"] == pytest.approx(alone, abs=1e-4)
        assert record["predicted"] == "ABCD"[max(range(4), key=lambda i: alone[i])]


def test_option_loglik_reproduces_the_cloze_scorers_numbers(base_model: Path, loaded, demo) -> None:
    first = [i for i, q in enumerate(demo[0]) if int(q["question_id"].rsplit("q", 1)[1]) <= 8]  # q1-q8 of each
    questions, framed = [demo[0][i] for i in first], [demo[1][i] for i in first]
    model, tokenizer = loaded
    exact = scorers.Model(str(base_model), dtype="float32")  # the cloze scorer's numbers were measured in float32
    records, _ = scorers.score_option_loglik(exact, questions, framed, [[]] * len(questions))
    assert len(records) == 40 and sum(r["correct"] for r in records) == 7  # 17.5%, measured on those 40
    for q, f, record in list(zip(questions, framed, records, strict=True))[:3]:
        prompt = option_loglik.build_prompt(tokenizer, f)
        prompt_ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
        alone = []
        for option in q["options"]:
            joint = prompt + ("" if prompt[-1].isspace() else " ") + option.strip()  # the reply after the prompt
            ids = tokenizer(joint, add_special_tokens=False)["input_ids"]
            start = next(i for i, (a, b) in enumerate(zip([*prompt_ids, -1], ids, strict=False)) if a != b)
            with torch.inference_mode():
                logits = model(input_ids=torch.tensor([ids])).logits[0]
            logprobs = torch.log_softmax(logits[start - 1 : len(ids) - 1].float(), dim=-1)
            alone.append(float(logprobs.gather(1, torch.tensor(ids[start:])[:, None]).mean()))
        assert record["scores"] == pytest.approx(alone, abs=1e-4)


# Qwen3's chat template reduced to what matters here: `enable_thinking: false` opens the answer with an empty
# think block.
THINKING = (
    "{% for m in messages %}{{ '<|im_start|>' + m.role + '\\n' + m.content + '<|im_end|>\\n' }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}"
    "{% if enable_thinking is defined and enable_thinking is false %}{{ '<think>\\n\\n</think>\\n\\n' }}{% endif %}"
    "{% endif %}"
)
EMPTY_THINK = "<|im_start|>assistant\n<think>\n\n</think>\n\n"


def test_chat_template_variables_reach_every_scorer_prompt(tmp_path: Path, base_model: Path) -> None:
    from transformers import AutoTokenizer

    folder = tiny_llama(tmp_path / "tiny", base_model)
    tokenizer = AutoTokenizer.from_pretrained(folder)
    tokenizer.chat_template = THINKING
    tokenizer.save_pretrained(folder)
    off = {"enable_thinking": False}
    options = ["one", "two", "three", "four"]
    assert letter.build_prompt(tokenizer, "Q?", options, (), off).endswith(EMPTY_THINK + "Answer:")
    assert "<think>" not in letter.build_prompt(tokenizer, "Q?", options, (), {})
    assert option_loglik.build_prompt(tokenizer, "Q?", (), off).endswith(EMPTY_THINK)
    assert "<think>" not in option_loglik.build_prompt(tokenizer, "Q?", (), {})
    # generate and the judge write through the generation backend the scorer's Model builds
    request = Request("q", [{"role": "user", "content": "Q?"}], seed=0, prefill="Thought process:")
    backend = scorers.Model(str(folder), chat=off, dtype="float32").generator()
    assert backend.prompt_text(request).endswith(EMPTY_THINK + "Thought process:")
    assert "<think>" not in scorers.Model(str(folder), dtype="float32").generator().prompt_text(request)


def test_auto_dtype_is_bfloat16_only_where_the_device_has_fast_bfloat16(tmp_path: Path) -> None:
    """`auto`: bfloat16 on a GPU that supports it and on a CPU with AMX-BF16 tiles (read from /proc/cpuinfo's
    flags), float32 elsewhere; a named dtype is used as it is."""
    amx, avx2 = tmp_path / "amx", tmp_path / "avx2"
    amx.write_text("processor\t: 0\nflags\t\t: fpu sse avx2 avx512f avx512_bf16 amx_bf16 amx_tile\n")
    avx2.write_text("processor\t: 0\nflags\t\t: fpu sse avx2 fma\n")
    assert inference.cpu_bf16_tiles(str(amx)) and not inference.cpu_bf16_tiles(str(avx2))
    assert not inference.cpu_bf16_tiles(str(tmp_path / "missing"))
    assert inference.pick("auto", cuda=False, bf16=True) == ("cpu", "bfloat16")
    assert inference.pick("auto", cuda=False, bf16=False) == ("cpu", "float32")
    assert inference.pick("auto", cuda=True, bf16=False) == ("cuda", "float32")
    assert inference.pick("float32", cuda=False, bf16=True) == ("cpu", "float32")
    assert inference.pick("auto", cuda=False) == ("cpu", "bfloat16" if inference.cpu_bf16_tiles() else "float32")
    with pytest.raises(ValueError, match="float16"):
        inference.pick("float16")
