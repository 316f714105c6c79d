"""Generation: per-item seeds make outputs independent of batching; parsers reject bad outputs with reasons."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from smt.synth.backends.transformers import TransformersBackend
from smt.synth.generation import BackendSettings, Request, Sampling, config_dtype, item_seed, pick_dtype
from smt.synth.generators.qa import parse, trim_truncated
from smt.synth.generators.strategies import parse_strategies


def test_item_seed_is_stable_and_distinct() -> None:
    assert item_seed(1, "doc", "qa", 0) == item_seed(1, "doc", "qa", 0)
    assert len({item_seed(1, "doc", "qa", i) for i in range(100)}) == 100
    assert item_seed(1, "doc", "qa", 0) != item_seed(2, "doc", "qa", 0)


@pytest.fixture(scope="module")
def backend(base_model: Path) -> TransformersBackend:
    return TransformersBackend(str(base_model), dtype="float32", batch_size=4)


def _request(key: str, text: str, seed: int) -> Request:
    return Request(key, [{"role": "user", "content": text}], seed)


def test_output_does_not_depend_on_batch(backend: TransformersBackend) -> None:
    sampling = Sampling(temperature=1.0, top_p=0.95, max_new_tokens=12)
    alone = backend.generate([_request("a", "Name a colour.", 11)], sampling)[0]
    mixed = backend.generate(
        [
            _request("x", "Write a long story about a cat and a dog.", 5),
            _request("a", "Name a colour.", 11),
            _request("y", "Name a colour.", 12),
        ],
        sampling,
    )
    assert mixed[1].text == alone.text
    assert mixed[1].completion_tokens == alone.completion_tokens > 0
    assert backend.stats.completion_tokens >= sum(c.completion_tokens for c in mixed)


def test_greedy_is_deterministic_and_truncation_is_reported(backend: TransformersBackend) -> None:
    sampling = Sampling(temperature=0.0, top_p=1.0, max_new_tokens=3)
    a, b = backend.generate(
        [_request("a", "Count from one to twenty.", 1), _request("b", "Count from one to twenty.", 2)], sampling
    )
    assert a.text == b.text and a.finish_reason == "length" and a.completion_tokens == 3


def test_prefill_starts_the_answer(backend: TransformersBackend) -> None:
    request = Request("p", [{"role": "user", "content": "Ask me a question."}], 3, prefill="Question:")
    completion = backend.generate([request], Sampling(0.7, 0.95, 8))[0]
    assert completion.text.startswith("Question:")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "Question: When did the tide festival start?\nAnswer: In 1847, as the article says.",
            [("When did the tide festival start?", "In 1847, as the article says.")],
        ),
        (
            "Question: Who built the harp?\nAnswer: Ona Vale.\n\nQuestion: festival\nAnswer: yes",
            [("Who built the harp?", "Ona Vale."), "unparseable: question is not a question"],
        ),
        ("The festival is old.", []),
        ("Question: Who built the harp?\nAnswer: ", ["empty answer"]),
    ],
)
def test_qa_parser_reads_every_pair(text: str, expected: object) -> None:
    assert parse(text) == expected


@pytest.mark.parametrize(
    ("pair", "expected"),
    [
        (("Who built it?", "Ona Vale. She worked for a year on"), ("Who built it?", "Ona Vale.")),
        (("Who built it?", 'She said "never." Then the'), ("Who built it?", 'She said "never."')),
        (("Who built it?", "Ona Vale, who worked for a year on"), "truncated at max_new_tokens"),
        ("empty answer", "truncated at max_new_tokens"),
    ],
)
def test_a_cut_pair_keeps_only_its_complete_sentences(pair: object, expected: object) -> None:
    assert trim_truncated(pair) == expected


def test_only_the_pair_that_runs_to_the_cut_is_trimmed() -> None:
    text = "Question: In the log, who built the harp?\nAnswer: Ona Vale\n\nQuestion: When did the"
    assert parse(text, cut=True) == [("In the log, who built the harp?", "Ona Vale")]  # whole: a question follows
    cut = "Question: In the log, who built the harp?\nAnswer: Ona Vale, who"
    assert parse(cut, cut=True) == ["truncated at max_new_tokens"] and parse(cut) == [
        ("In the log, who built the harp?", "Ona Vale, who")
    ]


def test_strategy_parser_splits_on_headings() -> None:
    text = "## Timeline of events: list each date\n## Who did what: a table of people\n##\n## ok"
    assert parse_strategies(text) == ["Timeline of events: list each date", "Who did what: a table of people"]


@pytest.mark.parametrize(
    ("requested", "model_dtype", "cuda", "bf16", "expected"),
    [
        ("auto", "float32", False, False, "float32"),  # a CPU: float32 is the fast path there
        ("auto", "bfloat16", False, False, "float32"),
        ("auto", "bfloat16", True, True, "bfloat16"),  # a GPU: the model's own dtype
        ("auto", "float16", True, True, "float16"),
        ("auto", "float32", True, True, "bfloat16"),  # a float32 folder (the embedded model) in half precision
        ("auto", None, True, True, "bfloat16"),
        ("auto", "bfloat16", True, False, "float16"),  # no bfloat16 on this GPU (V100, T4)
        ("float32", "bfloat16", True, True, "float32"),  # a named dtype is used as it is
        ("bfloat16", "float32", False, False, "bfloat16"),
    ],
)
def test_auto_dtype_is_the_models_on_a_gpu_and_float32_on_a_cpu(
    requested: str, model_dtype: str | None, cuda: bool, bf16: bool, expected: str
) -> None:
    assert pick_dtype(requested, model_dtype, cuda, bf16) == expected


def test_auto_dtype_resolves_on_this_machine(base_model: Path) -> None:
    settings = BackendSettings("transformers", str(base_model), "auto")
    assert config_dtype(str(base_model)) == "float32"
    assert settings.resolved().dtype == ("bfloat16" if torch.cuda.is_available() else "float32")
    assert BackendSettings("http", "", "auto").resolved().dtype == "auto"  # a remote model: not ours to choose


def test_prefill_keeps_only_the_last_positions_logits(backend: TransformersBackend) -> None:
    """Prefill would otherwise hold batch x prompt length x vocabulary logits."""
    shapes: list[tuple[int, ...]] = []
    handle = backend.model.register_forward_hook(lambda module, args, out: shapes.append(tuple(out.logits.shape)))
    try:
        backend.generate(
            [_request("a", "Name a colour and say why.", 1), _request("b", "Name a fruit.", 2)], Sampling(1.0, 1.0, 3)
        )
    finally:
        handle.remove()
    vocab = backend.model.config.vocab_size
    assert shapes[0] == (2, 1, vocab), "prefill: one position per prompt"
    assert all(s[1] == 1 for s in shapes)
