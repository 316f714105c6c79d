"""Stage mix: a recipe's synthetic streams mixed by their token shares of a budget, plus replay text
(smt/train/mixing.py), counted with the student's tokenizer."""

from __future__ import annotations

import json
from typing import Any

from smt import io, tokens
from smt.pipeline.context import StageContext
from smt.synth import contamination, records
from smt.train.mixing import REPLAY, count_tokens, generation, mix, qa_item, replay_passages


def item(record: dict[str, Any]) -> dict[str, Any]:
    """A synthetic record as training text: a QA keeps its prompt (for answer-only loss), a document does not."""
    if record["generator"] == "qa":
        return {**qa_item(record), "generator": "qa"}
    return {
        "id": record["id"],
        "doc_id": record["doc_id"],
        "text": records.text(record),
        "generator": record["generator"],
    }


def run(ctx: StageContext) -> None:
    shares = ctx.p(f"recipes.{ctx.axes['recipe']}")
    generated = {name: io.read_jsonl(path) for name, path in zip(shares, ctx.inputs["streams"], strict=True)}
    index = contamination.load_index(ctx.input("questions"), ctx.input("documents"), ctx.p("audit.ngram"))
    checked, _ = contamination.audit(generated, index, ctx.p("audit.max_contamination"))
    tokenizer = tokens.load(ctx.input("model"))
    streams = {name: [item(r) for r in found] for name, found in generated.items()}
    streams[REPLAY] = replay_passages(ctx.input("replay"))
    count_tokens(streams, tokenizer)
    mixed, report = mix(
        streams, ctx.budget, shares, ctx.p("mix.replay_fraction"), ctx.p("seed"), ctx.p("mix.max_repeat_fraction")
    )
    report["recipe"] = ctx.axes["recipe"]
    report["contamination_max"] = checked["max"]
    report["replay_corpus"] = ctx.input("replay")
    report["generation"] = generation(ctx.inputs["manifests"])
    report["provenance"] = ctx.provenance()
    io.write_jsonl(ctx.outputs["train"], mixed)
    io.write_json(ctx.outputs["report"], report)
    ctx.log.info("mix: %d items, %d tokens %s", len(mixed), report["total_tokens"], json.dumps(report["tokens"]))
