"""Build a benchmark's retrieval index (BM25 + dense) once, for every retrieval to query."""

from __future__ import annotations

import time

import polars as pl

from smt import io
from smt.pipeline.context import StageContext
from smt.rag import embedding, retrieval
from smt.rag.chunks import chunk_documents


def run(ctx: StageContext) -> None:
    started = time.time()
    docs = pl.read_parquet(ctx.input("documents")).sort("doc_id").to_dicts()
    unit, model = ctx.p("rag.chunk_unit"), ctx.p("rag.embedding_model")
    chunks = chunk_documents(
        docs,
        ctx.p("rag.chunk_size"),
        ctx.p("rag.chunk_overlap"),
        unit=unit,
        prepend_metadata=ctx.p("rag.prepend_metadata"),
        tokenizer=embedding.load_tokenizer(model) if unit == "tokens" else None,
    )
    ctx.log.info("%d documents -> %d chunks of up to %d %s", len(docs), len(chunks), ctx.p("rag.chunk_size"), unit)
    with io.atomic_dir(ctx.outputs["index"]) as tmp:
        info = retrieval.build_index(
            chunks,
            model,
            tmp,
            extra={"benchmark": ctx.benchmark, "provenance": ctx.provenance()},
            document_prompt=ctx.p("rag.embedding_document_prompt"),
            batch_size=ctx.p("rag.embedding_batch_size"),
            dtype=ctx.p("rag.dtype"),
        )
    ctx.log.info(
        "index: %d chunks, dim %d, embedded on %s, built in %.1fs",
        info["chunks"], info["embedding_dim"], info["embedded_on"], time.time() - started,
    )  # fmt: skip
