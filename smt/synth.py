"""What the synthetic-data stages share: documents as text, the generator, and the manifest."""

from __future__ import annotations

import os
import time
from typing import Any

import polars as pl

from smt import io, prompts
from smt.context import StageContext
from smt.generation import Sampling, Stats, TransformersBackend, backend_from_params


def documents(ctx: StageContext) -> list[dict[str, Any]]:
    return pl.read_parquet(ctx.input("documents")).sort("doc_id").to_dicts()


def document_text(doc: dict[str, Any]) -> str:
    return f"{doc['title']}\nby {doc['author']} ({doc['year']})\n\n{doc['text']}"


def generator(ctx: StageContext) -> TransformersBackend:
    return backend_from_params(
        ctx.p("generation.backend"), ctx.input("model"), ctx.p("generation.dtype"), ctx.p("generation.batch_size")
    )


def write_manifest(
    ctx: StageContext,
    *,
    model_dir: str,
    sampling: dict[str, Sampling],
    prompt_names: list[str],
    stats: Stats,
    counts: dict[str, int],
    rejected: list[dict[str, Any]],
    started: float,
) -> None:
    manifest_path = f"{model_dir}/smt_manifest.json"
    model = io.read_json(manifest_path) if os.path.exists(manifest_path) else {}
    io.write_json(
        ctx.outputs["manifest"],
        {
            "model": {"path": model_dir, "id": model.get("model_id"), "source": model.get("source")},
            "backend": ctx.p("generation.backend"),
            "sampling": {name: s.as_dict() for name, s in sampling.items()},
            "seed": ctx.p("seed"),
            "prompts": {name: prompts.digest(name) for name in prompt_names},
            "counts": counts,
            "rejected": rejected,
            "generation": stats.as_dict(),
            "wall_seconds": round(time.time() - started, 2),
            "provenance": ctx.provenance(),
        },
    )
