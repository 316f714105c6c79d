"""Retrieve the chunks for every question once (top-K, optional rerank to top-k), for both RAG conditions,
and measure how often retrieval finds the gold document and, where the benchmark gives it, the gold evidence."""

from __future__ import annotations

import time
from typing import Any

import polars as pl
from tqdm import tqdm

from smt import io, rerank
from smt.context import StageContext
from smt.framing import framed_question
from smt.retrieval import Retriever


def evidence_spans(question: dict[str, Any], docs: dict[str, dict[str, Any]]) -> list[tuple[str, int, int]]:
    """(doc_id, start, end) of every evidence segment of a question that is in the corpus."""
    spans = []
    for ev in question["evidence"] or []:
        doc = docs.get(ev["doc_id"])
        for seg in (doc or {}).get("segments") or []:
            if seg["name"] == ev["segment"]:
                spans.append((ev["doc_id"], seg["start"], seg["end"]))
    return spans


def hits_evidence(hits: list[dict[str, Any]], spans: list[tuple[str, int, int]]) -> bool:
    """Whether a hit overlaps an evidence span of its document."""
    return any(
        h["doc_id"] == doc and h["char_start"] < end and start < h["char_end"]
        for h in hits
        for doc, start, end in spans
    )


def recall(records: list[dict[str, Any]]) -> dict[str, Any]:
    """Share of questions whose kept chunks include the gold document, and the gold evidence where known."""
    with_doc = [r for r in records if r["gold_document_in_corpus"]]
    with_evidence = [r for r in records if r["evidence_segments"]]
    return {
        "questions": len(records),
        "document_recall": sum(r["found_document"] for r in with_doc) / len(with_doc) if with_doc else None,
        "questions_with_document": len(with_doc),
        "evidence_recall": sum(r["found_evidence"] for r in with_evidence) / len(with_evidence)
        if with_evidence
        else None,
        "questions_with_evidence": len(with_evidence),
    }


def run(ctx: StageContext) -> None:
    started = time.time()
    questions = pl.read_parquet(ctx.input("questions")).sort("question_id").to_dicts()
    docs = {d["doc_id"]: d for d in pl.read_parquet(ctx.input("documents")).to_dicts()}
    retriever = Retriever.load(ctx.input("index"), ctx.p("rag.embedding_model"))
    method, depth, keep = ctx.p("rag.retriever"), ctx.p("rag.top_k_retrieve"), ctx.p("rag.top_k")
    if keep > depth:
        raise ValueError(f"rag.top_k = {keep} exceeds rag.top_k_retrieve = {depth}: cannot keep more than retrieved")
    reranker = rerank.load(ctx.p("rag.reranker"), ctx.input("model"), ctx.p("rag.reranker_model"))
    records = []
    for q in tqdm(questions, desc=f"retrieving {ctx.benchmark}", unit="q"):
        query = framed_question(q["question"], docs.get(q["doc_id"]))
        found = [
            {**retriever.rows[chunk_id], "score": round(score, 6)}
            for chunk_id, _, score in retriever.search(query, method, depth)
        ]
        kept = rerank.rerank(reranker, query, found, keep)
        spans = evidence_spans(q, docs)
        records.append(
            {
                "question_id": q["question_id"],
                "query": query,
                "hits": kept if ctx.p("rag.context_order") == "best_first" else kept[::-1],
                "gold_document_in_corpus": q["doc_id"] in docs,
                "found_document": any(h["doc_id"] == q["doc_id"] for h in kept),
                "evidence_segments": len(spans),
                "found_evidence": hits_evidence(kept, spans),
            }
        )
    io.write_jsonl(ctx.outputs["hits"], records)
    report = {
        **recall(records),
        "method": method,
        "top_k_retrieve": depth,
        "top_k": keep,
        "reranker": ctx.p("rag.reranker"),
        "context_order": ctx.p("rag.context_order"),
        "seconds": round(time.time() - started, 1),
        "provenance": ctx.provenance(),
    }
    io.write_json(ctx.outputs["report"], report)
    ctx.log.info(
        "retrieved %s top-%d of %d for %d questions: document recall %s, evidence recall %s",
        method, keep, depth, len(records), report["document_recall"], report["evidence_recall"],
    )  # fmt: skip
