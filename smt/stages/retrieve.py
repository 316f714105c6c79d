"""Retrieve the chunks for every question once (top-K, optional rerank to top-k), for both RAG conditions,
and measure how often retrieval finds the gold document and, where the benchmark gives it, the gold evidence.

The query is the question as the model sees it (framed by its document), and with `rag.query_options` a
multiple-choice question's lettered options after it. Queries are embedded in batches before any search."""

from __future__ import annotations

import time
from typing import Any

import polars as pl
from tqdm import tqdm

from smt import io, prompts
from smt.eval.framing import framed_question
from smt.eval.letter import choices_block
from smt.pipeline.context import StageContext
from smt.rag import rerank
from smt.rag.recall import evidence_spans, hits_evidence, recall
from smt.rag.retrieval import Retriever


def query_text(question: dict[str, Any], doc: dict[str, Any] | None, with_options: bool) -> str:
    """The retrieval query: the framed question, and its lettered options when asked and it has some."""
    query = framed_question(question["question"], doc)
    options = question.get("options") or []
    return f"{query}\n{choices_block(options)}" if with_options and options else query


def run(ctx: StageContext) -> None:
    started = time.time()
    questions = pl.read_parquet(ctx.input("questions")).sort("question_id").to_dicts()
    docs = {d["doc_id"]: d for d in pl.read_parquet(ctx.input("documents")).to_dicts()}
    retriever = Retriever.load(
        ctx.input("index"),
        ctx.p("rag.embedding_model"),
        query_prompt=ctx.p("rag.embedding_query_prompt"),
        batch_size=ctx.p("rag.embedding_batch_size"),
        dtype=ctx.p("rag.dtype"),
    )
    method, depth, keep = ctx.p("rag.retriever"), ctx.p("rag.top_k_retrieve"), ctx.p("rag.top_k")
    kind = ctx.p("rag.reranker")
    reranker = rerank.load(
        kind,
        ctx.input("model"),
        ctx.p("rag.reranker_model"),
        dtype=ctx.p("rag.dtype"),
        batch_size=ctx.p("rag.reranker_batch_size"),
        instruction=ctx.p("rag.reranker_instruction"),
        student_chat=ctx.p("models.${roles.student}.chat_template_kwargs"),
        reranker_chat=ctx.p("rag.reranker_chat_template_kwargs"),
    )
    queries = [query_text(q, docs.get(q["doc_id"]), ctx.p("rag.query_options")) for q in questions]
    if method != "bm25":
        retriever.prepare(queries)
    records = []
    for q, query in zip(tqdm(questions, desc=f"retrieving {ctx.benchmark}", unit="q"), queries, strict=True):
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
        "reranker": kind,
        "query_options": ctx.p("rag.query_options"),
        "context_order": ctx.p("rag.context_order"),
        "seconds": round(time.time() - started, 1),
        "provenance": ctx.provenance(),
    }
    if method != "bm25":
        report["embedding"] = {
            "model": ctx.p("rag.embedding_model"),
            "query_prompt": retriever.used_query_prompt(),
            **retriever.embedder_place(),
        }
    if reranker is not None:
        report["reranker_model"] = ctx.p("rag.reranker_model") if kind != "llm" else ctx.input("model")
        report["reranked_on"] = reranker.describe()
    if kind in ("llm", "causal_lm"):
        name = rerank.PROMPT if kind == "llm" else rerank.CAUSAL_PROMPT
        report["prompts"] = {name: prompts.digest(name)}
    io.write_json(ctx.outputs["report"], report)
    ctx.log.info(
        "retrieved %s top-%d of %d for %d questions: document recall %s, evidence recall %s",
        method, keep, depth, len(records), report["document_recall"], report["evidence_recall"],
    )  # fmt: skip
