"""What the two generation stages share: their context turned into the engine's plan (smt.synth.engine).

Not a stage itself: synth_qa and synth_docs build their plan here and run it, for all shards or, under
Snakemake's `<stage>_shard` jobs, for one.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from collections.abc import Callable

import polars as pl

from smt import artifacts, io, tokens
from smt.pipeline import params as P
from smt.pipeline import stage as ST
from smt.pipeline.context import StageContext
from smt.synth import collect, sections
from smt.synth.engine import Engine, Plan
from smt.synth.generation import BackendSettings
from smt.synth.job import Job


def backend_settings(ctx: StageContext) -> BackendSettings:
    batch = ctx.p("generation.batch_size")
    return BackendSettings(
        backend=ctx.p("generation.backend"),
        model_path=ctx.input("model"),
        dtype=ctx.p("generation.dtype"),
        batch_size=batch,
        vllm={"batch_size": batch, **ctx.p("generation.vllm")},
        http={"batch_size": batch, **ctx.p("generation.http")},
        chat_template_kwargs=ctx.p("models.${roles.generator}.chat_template_kwargs"),
    )


def fingerprint(ctx: StageContext, code: dict[str, str], count: int) -> str:
    """Everything a shard's records depend on: params values, input contents, code and shard count."""
    inputs = {name: [artifacts.content_hash(p) for p in paths] for name, paths in sorted(ctx.inputs.items())}
    blob = json.dumps(
        {
            "stage": ctx.stage.name,
            "axes": ctx.axes,
            "params": P.subset(ctx.params, ctx.keys),
            "inputs": inputs,
            "code": code,
            "shards": count,
        },
        sort_keys=True,
    )
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def units(ctx: StageContext, job: Job) -> list[dict]:
    """The documents as the generators work on them: whole, or in sections where longer than a request can hold
    (smt.synth.sections), sized from the generator's context and the stage's largest max_new_tokens."""
    documents = pl.read_parquet(ctx.input("documents")).sort("doc_id").to_dicts()
    model = ctx.input("model")
    engine_len = ctx.p("generation.vllm")["max_model_len"] if ctx.p("generation.backend") == "vllm" else 0
    new_tokens = max([job.max_new_tokens, *(v for k, v in job.options.items() if k.endswith("max_new_tokens"))])
    context = sections.context_length(model, engine_len)
    size = sections.section_budget(ctx.p("generation.section_tokens"), context, new_tokens)
    tokenizer = None
    if size:
        tokenizer = tokens.load(model)
    found = sections.split(documents, tokenizer, size, ctx.p("generation.section_by"))
    split = sum(1 for u in found if u["section_name"] != sections.WHOLE)
    ctx.log.info("%d documents as %d units (%d sections of long documents, %d tokens at most)",
                 len(documents), len(found), split, size)  # fmt: skip
    return found


def sized(ctx: StageContext, job: Job, count: int) -> Job:
    """The job with its share of the stream's token target per unit (document or section; smt.pipeline.targets),
    with the margin for tokenizers that count differently, and the rounds it may take to get there
    (smt.synth.rounds)."""
    target = io.read_json(ctx.input("target"))["target_tokens"]
    per_document = math.ceil(target * ctx.p("generation.target_margin") / count) if target else 0
    return dataclasses.replace(job, target_per_document=per_document, max_rounds=ctx.p("generation.max_rounds"))


def plan(ctx: StageContext, job: Job, records: str) -> Plan:
    count = ctx.p(ST.SHARDS_KEY)
    code = artifacts.files_hash(ctx.code)
    documents = units(ctx, job)
    return Plan(
        stage=ctx.stage.name,
        axes=ctx.axes,
        label=ctx.label,
        documents=documents,
        count=count,
        job=sized(ctx, job, len(documents)),
        settings=backend_settings(ctx),
        model=artifacts.model_identity(ctx.input("model")),
        code=code,
        fingerprint=fingerprint(ctx, code, count),
        shard_outputs=ctx.shard_outputs,
        journal=f"results/.journal/{ctx.label}",
        records=ctx.outputs[records],
        manifest=ctx.outputs["manifest"],
        provenance=ctx.provenance(),
        log=ctx.log,
    )


def run(ctx: StageContext, job: Job, produce: Callable[[Job], collect.Outcome], records: str) -> None:
    """All shards and the merge, or only the shard the context names."""
    engine = Engine(plan(ctx, job, records), produce)
    if ctx.shard is None:
        engine.run()
    elif not 0 <= ctx.shard < engine.plan.count:
        raise SystemExit(f"--shard {ctx.shard} is out of range: {ST.SHARDS_KEY} = {engine.plan.count}")
    else:
        engine.run_shard(ctx.shard)
