"""Stage report: the results page (each recipe against the base model and RAG, with intervals and gains; every
trained model's gains over RAG; every scorer's accuracy with its interval; the scaling figures; compute) as
markdown and HTML (smt/eval/report.py)."""

from __future__ import annotations

from smt import io
from smt.eval import report
from smt.eval.conditions import CONDITIONS
from smt.pipeline.context import StageContext


def run(ctx: StageContext) -> None:
    records = report.load_all([p for c in CONDITIONS for p in ctx.inputs[f"scores_{c}"]])
    scores = report.largest_budget(records)
    decimals = ctx.p("report.decimals")
    tables, wins = report.tables(scores, ctx.p("recipes"), decimals)
    lines = report.summary(wins, len(tables))
    scorers = sorted({name for r in records for name in (r.get("scorers") or {r["scorer"]: r})})
    models, by_scorer = report.model_rows(records, decimals), report.scorer_rows(records, decimals)
    figures = report.scaling(ctx.inputs["scaling_fits"], ctx.inputs["scaling_figures"])
    flops = report.compute(
        ctx.input("generator"),
        [*ctx.inputs["qa_manifests"], *ctx.inputs["docs_manifests"]],
        ctx.inputs["train_metrics"],
    )
    io.write_text(ctx.outputs["report"], report.markdown(tables, lines, scorers, figures, flops, models, by_scorer))
    io.write_text(ctx.outputs["html"], report.html_page(tables, lines, figures, flops, models, by_scorer))
    io.write_json(ctx.outputs["compute"], {**flops, "provenance": ctx.provenance()})
    ctx.log.info("report: %d benchmarks; %s", len(tables), " ".join(lines))
