"""`python -m smt plan`: what a configuration will cost before anything runs.

Per stage instance and in total: tokens to generate (each stream's target with its margin, smt.pipeline.targets)
and the requests that takes at most `max_new_tokens` each; training tokens (each mix's budget plus replay, times
the epochs); FLOPs (2MD for generation with the generator's M, 2M per prompt token for prefill when the documents
are ingested, 6ND per epoch with the student's N); and GPU-hours for a named GPU at assumed utilizations.
Parameter counts come from the models' files (a materialized folder, a local folder or the GGUF file).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from smt.artifacts import package_dir
from smt.pipeline import graph as G
from smt.pipeline import params as P
from smt.pipeline import stage as ST
from smt.pipeline import stages as S
from smt.pipeline import targets
from smt.train.compute import gpu_hours, parameter_count

ROLES = ("generator", "student")
CHARS_PER_TOKEN = 4  # a document's prompt tokens, estimated from its characters before a tokenizer is loaded


def model_parameters(params: dict[str, Any], name: str, given: dict[str, float]) -> int:
    """A model's parameter count: as given on the command line (for a model not downloaded yet), else from its
    files."""
    if name in given:
        return int(given[name])
    folder = Path(ST.fill_axes(S.BASE_MODEL, {"model": name}))
    spec = P.get(params, f"models.{name}")
    if folder.is_dir():
        return parameter_count(folder)
    if spec["source"] == "local":
        return parameter_count(spec["path"])
    return parameter_count(package_dir(spec["package"]) / spec["gguf_file"])


def document_tokens(benchmark: str) -> int | None:
    """A benchmark's average document length in tokens (estimated), once it is ingested."""
    path = Path(S.DOCUMENTS.replace("{benchmark}", benchmark))
    if not path.exists():
        return None
    import polars as pl

    lengths = pl.read_parquet(path)["text"].str.len_chars()
    return int(lengths.mean() or 0) // CHARS_PER_TOKEN


def rows(params: dict[str, Any], given: dict[str, float]) -> list[dict[str, Any]]:
    counts = {name: model_parameters(params, name, given) for name in {P.get(params, f"roles.{r}") for r in ROLES}}
    generator, student = counts[P.get(params, "roles.generator")], counts[P.get(params, "roles.student")]
    margin = P.get(params, "generation.target_margin")
    found = []
    for (benchmark, stream), target in sorted(targets.targets(params).items()):
        tokens = math.ceil(target * margin)
        key = "synth_qa.max_new_tokens" if stream == "qa" else "synth_docs.max_new_tokens"
        requests = math.ceil(tokens / P.get(params, key)) if tokens else 0
        prompt = document_tokens(benchmark)
        prefill = 2 * generator * requests * prompt if prompt is not None else None
        name = "synth_qa" if stream == "qa" else "synth_docs"
        axes = {"benchmark": benchmark} if stream == "qa" else {"benchmark": benchmark, "generator": stream}
        found.append(
            {
                "instance": ST.instance_id(S.stage(name), axes),
                "generate_tokens": tokens,
                "requests_at_least": requests,
                "flops": 2 * generator * tokens + (prefill or 0),
                "prefill_flops": prefill,
            }
        )
    epochs, replay = P.get(params, "train.epochs"), P.get(params, "mix.replay_fraction")
    for axes in G.instances(S.stage("train"), params):
        tokens = round(int(axes["budget"]) / (1 - replay))
        found.append(
            {
                "instance": ST.instance_id(S.stage("train"), axes),
                "train_tokens": round(tokens * epochs),
                "flops": 6 * student * tokens * epochs,
            }
        )
    return found


def run(params_path: str, gpu: str, generation_mfu: float, train_mfu: float, as_json: bool, given: list[str]) -> int:
    params = P.load(params_path)
    counts = {}
    for item in given:
        name, _, value = item.partition("=")
        counts[name] = float(value)
    found = rows(params, counts)
    for row in found:
        mfu = train_mfu if "train_tokens" in row else generation_mfu
        row["gpu_hours"] = round(gpu_hours(row["flops"], gpu, mfu), 4)
    total = {
        "flops": sum(r["flops"] for r in found),
        "gpu_hours": round(sum(r["gpu_hours"] for r in found), 3),
        "generate_tokens": sum(r.get("generate_tokens", 0) for r in found),
        "train_tokens": sum(r.get("train_tokens", 0) for r in found),
    }
    if as_json:
        print(json.dumps({"gpu": gpu, "generation_mfu": generation_mfu, "train_mfu": train_mfu, "rows": found,
                          "total": total}, indent=1))  # fmt: skip
        return 0
    print(f"{'instance':42s} {'tokens':>14s} {'FLOPs':>10s} {gpu + ' h':>12s}")
    for r in found:
        tokens = r.get("generate_tokens", r.get("train_tokens", 0))
        print(f"{r['instance']:42s} {tokens:>14,d} {r['flops']:>10.3g} {r['gpu_hours']:>12.3f}")
    print(f"{'total':42s} {total['generate_tokens'] + total['train_tokens']:>14,d} {total['flops']:>10.3g} "
          f"{total['gpu_hours']:>12.3f}")  # fmt: skip
    print(
        f"(generation at {generation_mfu:.0%} and training at {train_mfu:.0%} of the {gpu}'s dense bf16 peak; "
        "prefill counted where the documents are ingested; one pass of 2MD per generated token)"
    )
    return 0
