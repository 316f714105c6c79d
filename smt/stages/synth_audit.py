"""Audit of the synthetic data as DVC metrics: tokens per stream and generator (the student's tokenizer, as
the mix counts them), lexical diversity (distinct word 4-grams) and semantic diversity (Vendi score over
sentence embeddings) per generator."""

from __future__ import annotations

from typing import Any

from smt import io, tokens
from smt.pipeline.context import StageContext
from smt.rag import embedding
from smt.synth import diversity, records


def run(ctx: StageContext) -> None:
    tokenizer = tokens.load(ctx.input("model"))
    embedder = embedding.load_embedder(ctx.p("audit.embedding_model"))
    found = records.streams(ctx.input("qa"), ctx.inputs["docs"])
    report: dict[str, Any] = {"tokens": {}, "items": {}, "unique_4gram_ratio": {}, "vendi": {}}
    for name, items in found.items():
        texts = [records.text(item) for item in items]
        report["items"][name] = len(items)
        report["tokens"][name] = (
            sum(len(ids) for ids in tokenizer(texts, add_special_tokens=False).input_ids) if texts else 0
        )
        report["unique_4gram_ratio"][name] = round(diversity.unique_ngram_ratio(texts), 4)
        chosen = diversity.sample(items, ctx.p("audit.max_items_per_generator"), ctx.p("seed"), name)
        vectors = embedding.embed(embedder, [records.text(item) for item in chosen])
        report["vendi"][name] = round(diversity.vendi_score(vectors), 4)
    report["tokens_by_stream"] = {
        "qa": report["tokens"]["qa"],
        "docs": sum(v for k, v in report["tokens"].items() if k != "qa"),
    }
    io.write_json(ctx.outputs["report"], report)
    ctx.log.info("audit: %s", report)
