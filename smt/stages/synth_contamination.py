"""Contamination check of the synthetic data against the benchmark's questions and answer options.

Writes a DVC metric (largest and mean overlap, per stream) and fails, naming the worst synthetic item and the
question it overlaps, when any item's overlap exceeds `audit.max_contamination`. The mix stage reads this
metric, so data that fails the check never reaches training.
"""

from __future__ import annotations

from typing import Any

import polars as pl

from smt import io
from smt.pipeline.context import StageContext
from smt.synth import contamination, records

TOP = 10


class ContaminationError(RuntimeError):
    """Synthetic text reproduces benchmark test items beyond the allowed overlap."""


def run(ctx: StageContext) -> None:
    n, limit = ctx.p("audit.ngram"), ctx.p("audit.max_contamination")
    questions = pl.read_parquet(ctx.input("questions")).to_dicts()
    documents = pl.read_parquet(ctx.input("documents"))["text"].to_list()
    index = contamination.Index(questions, documents, n)
    checked: list[dict[str, Any]] = []
    per_stream: dict[str, dict[str, float]] = {}
    for name, items in records.streams(ctx.input("qa"), ctx.inputs["docs"]).items():
        hits = [(item, index.check(records.text(item))) for item in items]
        overlaps = [hit.overlap for _, hit in hits]
        per_stream[name] = {
            "items": len(items),
            "max": round(max(overlaps, default=0.0), 4),
            "mean": round(sum(overlaps) / len(overlaps), 4) if overlaps else 0.0,
        }
        checked += [
            {"id": item["id"], "stream": name, "question_id": hit.question_id, "overlap": round(hit.overlap, 4)}
            for item, hit in hits
        ]
    worst = sorted(checked, key=lambda c: (-c["overlap"], c["id"]))[:TOP]
    over = [c for c in checked if c["overlap"] > limit]
    overlaps = [c["overlap"] for c in checked]
    report = {
        "ngram": n,
        "threshold": limit,
        "max": max(overlaps, default=0.0),
        "mean": round(sum(overlaps) / len(overlaps), 4) if overlaps else 0.0,
        "items": len(checked),
        "items_over_threshold": len(over),
        "questions_checked": len(index.sizes),
        "questions_unchecked": index.unchecked,
        "streams": per_stream,
    }
    ctx.log.info("contamination: %s", report)
    ctx.log.info("most overlapping items: %s", worst)
    if over:
        top = worst[0]
        raise ContaminationError(
            f"synthetic item {top['id']} ({top['stream']}) contains {top['overlap']:.0%} of the {n}-grams of "
            f"benchmark question {top['question_id']}, above audit.max_contamination = {limit}; {len(over)} of "
            f"{len(checked)} items are above it (details in {ctx.stage.name}'s log)"
        )
    io.write_json(ctx.outputs["report"], report)
