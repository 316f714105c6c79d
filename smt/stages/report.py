"""Stage report: the results page (scores with intervals, scaling figures, compute) as markdown and HTML
(smt/eval/report.py)."""

from __future__ import annotations

from smt import io
from smt.eval import report
from smt.eval.conditions import CONDITIONS
from smt.pipeline.context import StageContext


def run(ctx: StageContext) -> None:
    scores = report.load_scores({c: ctx.inputs[f"scores_{c}"] for c in CONDITIONS})
    decimals = ctx.p("report.decimals")
    rows = report.score_rows(scores, decimals)
    scorers = sorted({r["scorer"] for r in scores.values()})
    figures = report.scaling(ctx.inputs["scaling_fits"], ctx.inputs["scaling_figures"])
    flops = report.compute(
        ctx.input("base_model"),
        [*ctx.inputs["qa_manifests"], *ctx.inputs["docs_manifests"]],
        ctx.inputs["train_metrics"],
    )
    io.write_text(ctx.outputs["report"], report.markdown(rows, scorers, figures, flops))
    io.write_text(ctx.outputs["html"], report.html_page(rows, figures, flops))
    io.write_json(ctx.outputs["compute"], {**flops, "provenance": ctx.provenance()})
    ctx.log.info("report: %d benchmarks x %d conditions", len(rows), len(CONDITIONS))
