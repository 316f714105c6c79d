"""Stage synth_docs: synthetic documents from one generator per instance, `synth_docs@<benchmark>-<generator>`,
for each generator listed under `synth_docs.generators` (Active Reading, Focal Rewriting, WRAP, EntiGraph; see
smt/synth/generators/). Sharded and resumable like the QA stream."""

from __future__ import annotations

from smt.pipeline.context import StageContext
from smt.stages import plan
from smt.synth import generators
from smt.synth.job import Job


def run(ctx: StageContext) -> None:
    name = ctx.axes["generator"]
    job = Job(
        documents=[],
        seed=ctx.p("seed"),
        options=ctx.p(f"synth_docs.generators.{name}"),
        temperature=ctx.p("synth_docs.temperature"),
        top_p=ctx.p("synth_docs.top_p"),
        max_new_tokens=ctx.p("synth_docs.max_new_tokens"),
        questions=ctx.input("qa"),
    )
    plan.run(ctx, job, generators.producer(name), records="docs")
