"""Stage synth_qa: open-ended synthetic QAs for every document of a benchmark (smt/synth/generators/qa.py), sharded
and resumable (smt/synth/engine.py)."""

from __future__ import annotations

from smt.pipeline.context import StageContext
from smt.stages import plan
from smt.synth.generators import qa
from smt.synth.job import Job


def run(ctx: StageContext) -> None:
    job = Job(
        documents=[],
        seed=ctx.p("seed"),
        options={"per_request": ctx.p("synth_qa.per_request"), "per_document": ctx.p("synth_qa.per_document")},
        temperature=ctx.p("synth_qa.temperature"),
        top_p=ctx.p("synth_qa.top_p"),
        max_new_tokens=ctx.p("synth_qa.max_new_tokens"),
    )
    plan.run(ctx, job, qa.produce, records="qa")
