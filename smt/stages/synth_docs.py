"""Synthetic documents: one generator per stage instance, `synth_docs@<benchmark>-<generator>`, for each
generator listed under `synth_docs.generators` in params.yaml (Active Reading, Focal Rewriting, WRAP, EntiGraph;
see smt/generators/). Sharded and resumable like the QA stream (smt/shards.py)."""

from __future__ import annotations

from smt import generators, shards
from smt.context import StageContext


def run(ctx: StageContext) -> None:
    shards.run(ctx, generators.produce, records="docs")
