"""Stage report: the results page (each recipe against the base model and RAG, with intervals and gains; the
scaling figures; compute) as markdown and HTML (smt/eval/report.py)."""

from __future__ import annotations

from smt import io
from smt.eval import report
from smt.eval.conditions import CONDITIONS
from smt.pipeline.context import StageContext


def run(ctx: StageContext) -> None:
    scores = report.load_scores([p for c in CONDITIONS for p in ctx.inputs[f"scores_{c}"]])
    tables, wins = report.tables(scores, ctx.p("recipes"), ctx.p("report.decimals"))
    lines = report.summary(wins, len(tables))
    scorers = sorted({r["scorer"] for r in scores.values()})
    figures = report.scaling(ctx.inputs["scaling_fits"], ctx.inputs["scaling_figures"])
    flops = report.compute(
        ctx.input("generator"),
        [*ctx.inputs["qa_manifests"], *ctx.inputs["docs_manifests"]],
        ctx.inputs["train_metrics"],
    )
    io.write_text(ctx.outputs["report"], report.markdown(tables, lines, scorers, figures, flops))
    io.write_text(ctx.outputs["html"], report.html_page(tables, lines, figures, flops))
    io.write_json(ctx.outputs["compute"], {**flops, "provenance": ctx.provenance()})
    ctx.log.info("report: %d benchmarks; %s", len(tables), " ".join(lines))
