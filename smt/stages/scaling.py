"""Stage scaling: accuracy against unique synthetic tokens over the budget sweep, per recipe: log-linear fits
and the figure (smt/eval/scaling.py)."""

from __future__ import annotations

from smt import io
from smt.eval import scaling
from smt.pipeline.context import StageContext


def run(ctx: StageContext) -> None:
    tokens = scaling.synthetic_tokens(ctx.inputs["mix_reports"])
    rows = scaling.points([*ctx.inputs["smt_closed_book"], *ctx.inputs["smt_rag"]], tokens)
    rag = io.read_json(ctx.input("rag_base"))
    fits = scaling.fits(rows, rag["accuracy"])
    scaling.write_points(ctx.outputs["points"], rows)
    io.write_json(
        ctx.outputs["fit"],
        {
            "benchmark": ctx.benchmark,
            "rag_base_accuracy": rag["accuracy"],
            "fits": fits,
            "budgets": sorted({b for _, b in tokens}),
            "provenance": ctx.provenance(),
        },
    )
    scaling.plot(ctx.outputs["figure"], ctx.benchmark, rows, rag, fits)
    ctx.log.info("scaling %s: %d points over %d recipes", ctx.benchmark, len(rows), len(fits))
