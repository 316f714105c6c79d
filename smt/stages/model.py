"""Stage model: one model under `models` materialized once as a normal Hugging Face folder (smt/models.py), with
smt's manifest; every role that names it (generator, student, judge) reads that folder."""

from __future__ import annotations

from smt import artifacts, io, models
from smt.pipeline.context import StageContext


def run(ctx: StageContext) -> None:
    spec = {key.rsplit(".", 1)[1]: ctx.p(key) for key in ctx.keys}  # the entry, less its chat-template variables
    with io.atomic_dir(ctx.outputs["model"]) as tmp:
        if spec["source"] == "gguf_package":
            origin = models.from_gguf_package(spec["package"], spec["gguf_file"], spec["dtype"], tmp)
        else:
            origin = models.from_local(spec["path"], tmp)
        artifacts.write_manifest(
            tmp,
            {
                "model_id": spec["id"],
                "name": ctx.axes["model"],
                "source": spec["source"],
                "origin": origin,
                "dtype": spec["dtype"],
                "provenance": ctx.provenance(),
            },
        )
    ctx.log.info("model %s (%s) materialized from %s", ctx.axes["model"], spec["id"], spec["source"])
