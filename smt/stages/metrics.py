"""Stage metrics: results/metrics.json, the one DVC metrics file (smt/eval/summary.py says what it holds and why).

Inputs are every instance's files; the benchmark (and recipe and budget) of each is read from its path, laid out
as results/<kind>/<benchmark>/[<recipe>/<budget>/]<file>.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from smt import io
from smt.eval import summary
from smt.eval.conditions import CONDITIONS
from smt.pipeline.context import StageContext


def per_benchmark(paths: list[str]) -> dict[str, dict[str, Any]]:
    """results/<kind>/<benchmark>/<file> -> {benchmark: content}."""
    return {Path(p).parent.name: io.read_json(p) for p in paths}


def per_run(paths: list[str]) -> dict[tuple[str, str, int], dict[str, Any]]:
    """results/<kind>/<benchmark>/<recipe>/<budget>/<file> -> {(benchmark, recipe, budget): content}."""
    found = {}
    for path in paths:
        benchmark, recipe, budget = Path(path).parts[-4:-1]
        found[(benchmark, recipe, int(budget))] = io.read_json(path)
    return found


def run(ctx: StageContext) -> None:
    tree: dict[str, Any] = {}
    summary.score_metrics(tree, [io.read_json(p) for c in CONDITIONS for p in ctx.inputs[f"scores_{c}"]])
    ingest, retrieval = per_benchmark(ctx.inputs["ingest_reports"]), per_benchmark(ctx.inputs["retrieval_reports"])
    contamination, audits = per_benchmark(ctx.inputs["contamination"]), per_benchmark(ctx.inputs["audits"])
    for benchmark in ingest:
        summary.benchmark_metrics(
            tree, benchmark, ingest[benchmark], retrieval[benchmark], contamination[benchmark], audits[benchmark]
        )
    mixes, trains = per_run(ctx.inputs["mix_reports"]), per_run(ctx.inputs["train_metrics"])
    summary.recipe_metrics(tree, {k: (mixes[k], trains[k]) for k in mixes}, per_benchmark(ctx.inputs["scaling_fits"]))
    summary.compute_metrics(tree, io.read_json(ctx.input("compute")))
    # in the order built (scores first), which is the order of the columns in `dvc exp show`
    io.write_text(ctx.outputs["metrics"], json.dumps(tree, indent=2) + "\n")
    ctx.log.info("metrics: %s", tree)
