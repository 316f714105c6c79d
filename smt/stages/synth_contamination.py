"""Stage synth_contamination: every synthetic stream of a benchmark checked against its questions and answer
options (smt/synth/contamination.py). Writes a DVC metric (largest and mean overlap, per stream) and fails,
naming the worst synthetic item and the question it overlaps, when any item's overlap exceeds
`audit.max_contamination`. Each mix runs the same check on its own streams before mixing, so data that fails
it never reaches training."""

from __future__ import annotations

from smt import io
from smt.pipeline.context import StageContext
from smt.synth import contamination, records


def run(ctx: StageContext) -> None:
    streams = records.streams(ctx.input("qa"), ctx.inputs["docs"])
    index = contamination.load_index(ctx.input("questions"), ctx.input("documents"), ctx.p("audit.ngram"))
    report, worst = contamination.audit(streams, index, ctx.p("audit.max_contamination"))
    ctx.log.info("contamination: %s", report)
    ctx.log.info("most overlapping items: %s", worst)
    io.write_json(ctx.outputs["report"], report)
