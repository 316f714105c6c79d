"""Stage model: the base model materialized as a normal Hugging Face folder (smt/models.py), with smt's manifest."""

from __future__ import annotations

from smt import artifacts, io, models
from smt.pipeline.context import StageContext


def run(ctx: StageContext) -> None:
    source = ctx.p("model.source")
    with io.atomic_dir(ctx.outputs["model"]) as tmp:
        if source == "gguf_package":
            origin = models.from_gguf_package(
                ctx.p("model.package"), ctx.p("model.gguf_file"), ctx.p("model.dtype"), tmp
            )
        else:
            origin = models.from_local(ctx.p("model.path"), tmp)
        artifacts.write_manifest(
            tmp,
            {
                "model_id": ctx.p("model.id"),
                "source": source,
                "origin": origin,
                "dtype": ctx.p("model.dtype"),
                "provenance": ctx.provenance(),
            },
        )
    ctx.log.info("model %s materialized from %s", ctx.p("model.id"), source)
