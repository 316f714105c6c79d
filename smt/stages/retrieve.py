"""Retrieve the chunks for every question once (top-K, optional rerank to top-k), for both RAG conditions,
and measure how often retrieval finds the gold document and, where the benchmark gives it, the gold evidence."""

from __future__ import annotations

import time

import polars as pl
from tqdm import tqdm

from smt import io, prompts
from smt.eval.framing import framed_question
from smt.pipeline.context import StageContext
from smt.rag import rerank
from smt.rag.recall import evidence_spans, hits_evidence, recall
from smt.rag.retrieval import Retriever


def run(ctx: StageContext) -> None:
    started = time.time()
    questions = pl.read_parquet(ctx.input("questions")).sort("question_id").to_dicts()
    docs = {d["doc_id"]: d for d in pl.read_parquet(ctx.input("documents")).to_dicts()}
    retriever = Retriever.load(ctx.input("index"), ctx.p("rag.embedding_model"))
    method, depth, keep = ctx.p("rag.retriever"), ctx.p("rag.top_k_retrieve"), ctx.p("rag.top_k")
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
    if ctx.p("rag.reranker") == "llm":
        report["prompts"] = {rerank.PROMPT: prompts.digest(rerank.PROMPT)}
    io.write_json(ctx.outputs["report"], report)
    ctx.log.info(
        "retrieved %s top-%d of %d for %d questions: document recall %s, evidence recall %s",
        method, keep, depth, len(records), report["document_recall"], report["evidence_recall"],
    )  # fmt: skip
