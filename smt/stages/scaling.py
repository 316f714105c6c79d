"""Stage scaling: accuracy against synthetic tokens over the budget sweep, its log-linear fit and the figure
(smt/eval/scaling.py)."""

from __future__ import annotations

from smt import io
from smt.eval import scaling
from smt.pipeline.context import StageContext


def run(ctx: StageContext) -> None:
    tokens = scaling.synthetic_tokens(ctx.inputs["mix_reports"])
    rows = scaling.points({c: ctx.inputs[c] for c in scaling.CONDITION_LABELS}, tokens)
    rag = io.read_json(ctx.input("rag_base"))
    fits = {
        c: scaling.fit_summary([r for r in rows if r["condition"] == c], rag["accuracy"])
        for c in scaling.CONDITION_LABELS
    }
    scaling.write_points(ctx.outputs["points"], rows)
    io.write_json(
        ctx.outputs["fit"],
        {
            "benchmark": ctx.benchmark,
            "rag_base_accuracy": rag["accuracy"],
            "fit_smt_closed_book": fits["smt_closed_book"],
            "fit_smt_rag": fits["smt_rag"],
            "budgets": sorted(tokens),
            "provenance": ctx.provenance(),
        },
    )
    scaling.plot(ctx.outputs["figure"], ctx.benchmark, rows, rag, fits)
    ctx.log.info("scaling %s: %d points, fits %s", ctx.benchmark, len(rows), {c: bool(f) for c, f in fits.items()})
