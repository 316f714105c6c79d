"""Ingest a benchmark from its published files into normalized tables (documents, questions) and a report."""

from __future__ import annotations

import re
from typing import Any

import polars as pl

from smt import benchmarks, io
from smt.benchmarks import tables as T
from smt.pipeline.context import StageContext

_TOKEN = re.compile(r"\w+|[^\w\s]")


def limit_documents(loaded: T.Loaded, limit: int) -> T.Loaded:
    """Keep the first `limit` documents by id (0 = all) and the questions about them; count the rest."""
    if not limit or len(loaded.documents) <= limit:
        return loaded
    kept = sorted(loaded.documents, key=lambda d: d["doc_id"])[:limit]
    ids = {d["doc_id"] for d in kept}
    all_ids = {d["doc_id"] for d in loaded.documents}
    questions = [q for q in loaded.questions if q["doc_id"] in ids or q["doc_id"] not in all_ids]
    loaded.exclude("beyond_max_documents_documents", len(loaded.documents) - len(kept))
    loaded.exclude("beyond_max_documents_questions", len(loaded.questions) - len(questions))
    loaded.documents, loaded.questions = kept, questions
    return loaded


def _stats(values: pl.Series) -> dict[str, float]:
    if values.is_empty():
        return {"mean": 0.0, "min": 0.0, "max": 0.0}
    return {"mean": round(float(values.mean() or 0), 1), "min": float(values.min()), "max": float(values.max())}


def report(benchmark: str, loaded: T.Loaded, docs: pl.DataFrame, questions: pl.DataFrame) -> dict[str, Any]:
    """Counts a reader checks first: documents, questions (by kind and status), size per document, exclusions.
    Tokens are words and punctuation marks (regex \\w+|[^\\w\\s]), independent of any model's tokenizer."""
    tokens = docs["text"].map_elements(lambda t: len(_TOKEN.findall(t)), return_dtype=pl.Int64)
    return {
        "benchmark": benchmark,
        "documents": docs.height,
        "questions": questions.height,
        "questions_by_kind": dict(questions["kind"].value_counts().sort("kind").iter_rows()),
        "questions_by_status": dict(questions["status"].value_counts().sort("status").iter_rows()),
        "difficult_questions": int(questions["difficult"].sum() or 0),
        "tokens_total": int(tokens.sum() or 0),
        "tokens_per_document": _stats(tokens),
        "words_per_document": _stats(docs["n_words"]),
        "excluded": dict(sorted(loaded.excluded.items())),
    }


def run(ctx: StageContext) -> None:
    options = ctx.p(f"benchmarks.{ctx.benchmark}")
    loaded = benchmarks.load(ctx.benchmark, {**options, "source": ctx.input("source")}, workers=ctx.stage.threads)
    loaded = limit_documents(loaded, ctx.p("ingest.max_documents"))
    docs, questions = T.to_frames(loaded)
    summary = report(ctx.benchmark, loaded, docs, questions)
    for name, table in (("documents", docs), ("questions", questions)):
        with io.atomic_path(ctx.outputs[name]) as tmp:
            table.write_parquet(tmp)
    io.write_json(ctx.outputs["report"], summary)
    io.write_json(ctx.outputs["details"], {"benchmark": ctx.benchmark, **loaded.notes, "provenance": ctx.provenance()})
    ctx.log.info(
        "ingested %d documents, %d questions (%s); excluded %s",
        docs.height, questions.height, summary["questions_by_status"], summary["excluded"] or "nothing",
    )  # fmt: skip
