"""Generation: per-item seeds make outputs independent of batching; parsers reject bad outputs with reasons."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from smt.inference import cpu_bf16_tiles
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


@pytest.fixture(scope="module", params=["float32", "bfloat16"])
def cpu_backend(request: pytest.FixtureRequest, base_model: Path) -> TransformersBackend:
    """The backend in each dtype a CPU runs it in (`auto`: bfloat16 on AMX-BF16 tiles, float32 elsewhere)."""
    if torch.cuda.is_available():
        pytest.skip("batch invariance is a CPU property; on a GPU completions may change with the batch")
    return TransformersBackend(str(base_model), dtype=request.param, batch_size=4)


def _request(key: str, text: str, seed: int) -> Request:
    return Request(key, [{"role": "user", "content": text}], seed)


def test_output_does_not_depend_on_batch(cpu_backend: TransformersBackend) -> None:
    backend = cpu_backend
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


@pytest.mark.parametrize("lanes", [2, 6])
def test_a_request_taking_a_freed_lane_draws_what_it_draws_alone(
    cpu_backend: TransformersBackend, monkeypatch: pytest.MonkeyPatch, lanes: int
) -> None:
    """Continuous batching: two or six lanes for nine requests, so the rest enter lanes other requests left (with
    two lanes, after the cache dropped its dead positions), and the last steps run as few rows as the machine
    computes alike (`lane_floor`); each completion equals the request run alone."""
    from smt.synth.backends import transformers as module

    widths: list[tuple[int, int]] = []
    trim = module.trim

    def spy(cache: object, mask: torch.Tensor, rows: list[int]) -> torch.Tensor:
        out = trim(cache, mask, rows)  # type: ignore[arg-type]
        widths.append((mask.shape[1], out.shape[1]))
        return out

    monkeypatch.setattr(module, "trim", spy)
    dtype = str(cpu_backend.model.dtype).removeprefix("torch.")
    backend = TransformersBackend(str(cpu_backend.model.name_or_path), dtype=dtype, batch_size=lanes)
    shapes: list[tuple[int, int]] = []  # (rows, tokens) of every forward pass
    handle = backend.model.register_forward_hook(
        lambda module, args, kwargs, out: shapes.append(tuple(kwargs["input_ids"].shape)), with_kwargs=True
    )
    texts = ["Name a colour.", "Write a long story about a cat, a dog and a fox.", "Say hi.", "Name a fruit.",
             "List three rivers of Europe and say which is longest.", "Count to five.", "Name a bird.",
             "Describe a storm at sea in three sentences.", "Say goodbye."]  # fmt: skip
    sampling = Sampling(temperature=1.0, top_p=0.95, max_new_tokens=24)
    try:
        together = backend.generate([_request(str(i), t, 20 + i) for i, t in enumerate(texts)], sampling)
    finally:
        handle.remove()
    alone = [backend.generate([_request(str(i), t, 20 + i)], sampling)[0] for i, t in enumerate(texts)]
    assert [c.text for c in together] == [c.text for c in alone]
    decode = [rows for rows, tokens in shapes if tokens == 1]  # prefills run one prompt of several tokens
    assert max(decode) == lanes and min(decode) >= backend.lane_floor >= 1
    assert lanes > 2 or any(after < before for before, after in widths), "the dead positions were dropped"


def test_the_lane_floor_is_the_fewest_rows_computed_exactly_as_a_full_batch(cpu_backend: TransformersBackend) -> None:
    """The probe's answer holds on the model itself: every row count from the floor to batch_size gives each row the
    logits it gets in a full batch, bit for bit, and one row fewer does not (unless the floor is one row)."""
    from smt.synth.backends import lanes

    model, size = cpu_backend.model, 6
    floor = lanes.floor(model, size)
    ids = torch.randint(1000, (size, 1), generator=torch.Generator().manual_seed(5))
    with torch.inference_mode():
        full = model(input_ids=ids, use_cache=False).logits
        for rows in range(floor, size + 1):
            assert torch.equal(model(input_ids=ids[:rows], use_cache=False).logits, full[:rows])
        if floor > 1:
            assert not torch.equal(model(input_ids=ids[: floor - 1], use_cache=False).logits, full[: floor - 1])


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
        ("auto", "float32", False, False, "float32"),  # a CPU without bfloat16 units: float32 is its fast path
        ("auto", "bfloat16", False, False, "float32"),
        ("auto", "float32", False, True, "bfloat16"),  # a CPU with AMX-BF16 tiles
        ("auto", "float16", False, True, "bfloat16"),
        ("auto", "bfloat16", True, True, "bfloat16"),  # a GPU: the model's own dtype
        ("auto", "float16", True, True, "float16"),
        ("auto", "float32", True, True, "bfloat16"),  # a float32 folder (the embedded model) in half precision
        ("auto", None, True, True, "bfloat16"),
        ("auto", "bfloat16", True, False, "float16"),  # no bfloat16 on this GPU (V100, T4)
        ("float32", "bfloat16", True, True, "float32"),  # a named dtype is used as it is
        ("bfloat16", "float32", False, False, "bfloat16"),
    ],
)
def test_auto_dtype_is_the_models_on_a_gpu_and_the_fast_one_on_a_cpu(
    requested: str, model_dtype: str | None, cuda: bool, bf16: bool, expected: str
) -> None:
    assert pick_dtype(requested, model_dtype, cuda, bf16) == expected


def test_auto_dtype_resolves_on_this_machine(base_model: Path) -> None:
    settings = BackendSettings("transformers", str(base_model), "auto")
    assert config_dtype(str(base_model)) == "float32"
    fast_half = torch.cuda.is_available() or cpu_bf16_tiles()
    assert settings.resolved().dtype == ("bfloat16" if fast_half else "float32")
    assert BackendSettings("http", "", "auto").resolved().dtype == "auto"  # a remote model: not ours to choose


def test_prefill_keeps_only_the_last_positions_logits(backend: TransformersBackend) -> None:
    """Prefill would otherwise hold batch x prompt length x vocabulary logits. Each distinct prompt is prefilled
    alone (so its states never depend on its batch), then the batch decodes together."""
    shapes: list[tuple[int, ...]] = []
    handle = backend.model.register_forward_hook(lambda module, args, out: shapes.append(tuple(out.logits.shape)))
    try:
        backend.generate(
            [_request("a", "Name a colour and say why.", 1), _request("b", "Name a fruit.", 2)], Sampling(1.0, 1.0, 3)
        )
    finally:
        handle.remove()
    vocab = backend.model.config.vocab_size
    assert shapes[:2] == [(1, 1, vocab), (1, 1, vocab)], "prefill: one position per prompt"
    lanes = backend.batch_size if backend.invariant else 2  # a CPU in float32 decodes batch_size rows every step
    assert shapes[2] == (lanes, 1, vocab), "decode: the batch together"


def test_a_prompt_asked_again_is_not_prefilled_again_and_draws_the_same(base_model: Path) -> None:
    """Generation rounds ask the same document again; its states come from the prompt cache, and a cache hit
    changes nothing in the completion."""
    backend = TransformersBackend(str(base_model), dtype="float32", batch_size=4)
    prompt_lengths: list[int] = []
    handle = backend.model.register_forward_hook(
        lambda module, args, kwargs, out: prompt_lengths.append(kwargs["input_ids"].shape[1]), with_kwargs=True
    )
    sampling = Sampling(temperature=1.0, top_p=0.9, max_new_tokens=8)
    try:
        first = backend.generate([_request("a", "Name a colour.", 3)], sampling)[0]
        prefills = sum(n > 1 for n in prompt_lengths)
        again = backend.generate([_request("b", "Name a colour.", 3), _request("c", "Name a fruit.", 4)], sampling)
    finally:
        handle.remove()
    assert prefills == 1 and sum(n > 1 for n in prompt_lengths) == 2  # only the new prompt was prefilled
    assert backend.prompts.hits == 1 and again[0].text == first.text
    uncached = TransformersBackend(str(base_model), dtype="float32", batch_size=4, prompt_cache_bytes=0)
    assert uncached.generate([_request("b", "Name a colour.", 3)], sampling)[0].text == first.text
    assert uncached.prompts.entries == {}


def test_prompts_that_begin_alike_share_their_prefill_and_draw_what_they_draw_alone(base_model: Path) -> None:
    """A document's requests differ only after the document: the second prompt takes the first's leading chunks
    from the prefix cache and prefills only the rest, and its states and completion are bit for bit those it gets
    when nothing ran before it."""
    document = " ".join(f"Fact {i}: the lighthouse keeper of Varn counted {i * 7} ships in spring." for i in range(40))
    first, second = (f"{document}\n\nQuestion: {q}" for q in ("Who kept the lighthouse?", "How many ships came?"))
    sampling = Sampling(temperature=1.0, top_p=0.95, max_new_tokens=8)
    shared = TransformersBackend(str(base_model), dtype="float32", batch_size=4, prompt_cache_bytes=0)
    shared.generate([_request("a", first, 1)], sampling)
    computed = shared.prefixes.computed_tokens
    after = shared.generate([_request("b", second, 2)], sampling)[0]
    fresh = TransformersBackend(str(base_model), dtype="float32", batch_size=4, prompt_cache_bytes=0)
    alone = fresh.generate([_request("b", second, 2)], sampling)[0]
    chunk = shared.prefixes.chunk
    assert shared.prefixes.reused_tokens >= chunk * 4  # the document's whole chunks (its ~700 tokens)
    assert shared.prefixes.computed_tokens - computed < chunk * 2 and fresh.prefixes.reused_tokens == 0
    assert after.text == alone.text and after.completion_tokens == alone.completion_tokens > 0
    prompt = shared.prompt_text(_request("b", second, 2))
    reused, recomputed = shared._prompt_state(prompt), fresh._prompt_state(prompt)
    pairs = zip(reused.keys + reused.values, recomputed.keys + recomputed.values, strict=True)
    assert all(torch.equal(a, b) for a, b in pairs)
    assert torch.equal(reused.logits, recomputed.logits)


def test_decoding_matches_transformers_own_cache_and_attention(base_model: Path, backend: TransformersBackend) -> None:
    """The grouped attention and the growing cache are the same computation as transformers' defaults (its
    DynamicCache and SDPA with repeated KV heads): same greedy tokens, logits equal to float32 rounding."""
    from transformers import AutoModelForCausalLM

    stock = AutoModelForCausalLM.from_pretrained(str(base_model), dtype=torch.float32, attn_implementation="sdpa")
    prompts = ["Name a colour and say why it is your favourite.", "Name a fruit."]
    greedy = Sampling(temperature=0.0, top_p=1.0, max_new_tokens=10)
    ours = [c.text for c in backend.generate([_request(str(i), p, 0) for i, p in enumerate(prompts)], greedy)]
    tok = backend.tokenizer
    texts = [backend.prompt_text(_request("x", p, 0)) for p in prompts]
    enc = tok(texts, return_tensors="pt", padding=True, add_special_tokens=False)
    with torch.inference_mode():
        out = stock.generate(**enc, max_new_tokens=10, do_sample=False, pad_token_id=tok.pad_token_id)
        theirs = [tok.decode(row[enc.input_ids.shape[1] :], skip_special_tokens=True) for row in out]
        past, logits, attention, positions = backend._prefill(texts, 4)
        step = torch.stack([logits.argmax(-1)], 1)
        mine = backend.model(
            input_ids=step,
            attention_mask=torch.cat([attention, torch.ones_like(step)], 1),
            position_ids=positions + 1,
            past_key_values=past,
        ).logits[:, -1]
        full = torch.cat([enc.input_ids, step], 1)
        reference = stock(
            input_ids=full,
            attention_mask=torch.cat([enc.attention_mask, torch.ones_like(step)], 1),
            position_ids=(torch.cat([enc.attention_mask, torch.ones_like(step)], 1).cumsum(-1) - 1).clamp(min=0),
        ).logits[:, -1]
    assert ours == theirs
    assert torch.allclose(mine, reference, atol=2e-4), (mine - reference).abs().max()
