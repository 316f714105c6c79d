"""Build a benchmark's retrieval index (BM25 + dense) once, for every RAG evaluation to query."""

from __future__ import annotations

import time

import polars as pl

from smt import io, retrieval
from smt.context import StageContext


def run(ctx: StageContext) -> None:
    started = time.time()
    docs = pl.read_parquet(ctx.input("documents")).sort("doc_id").to_dicts()
    chunks = retrieval.chunk_documents(docs, ctx.p("rag.chunk_chars"), ctx.p("rag.chunk_overlap"))
    ctx.log.info("%d documents -> %d chunks", len(docs), len(chunks))
    with io.atomic_dir(ctx.outputs["index"]) as tmp:
        info = retrieval.build_index(
            chunks,
            ctx.p("rag.embedding_model"),
            tmp,
            extra={"benchmark": ctx.benchmark, "provenance": ctx.provenance()},
        )
    ctx.log.info(
        "index: %d chunks, dim %d, built in %.1fs", info["chunks"], info["embedding_dim"], time.time() - started
    )
