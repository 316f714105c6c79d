"""Stage mix: synthetic QAs and documents mixed to a token budget and ratio, plus replay text (smt/train/mixing.py),
counted with the student's tokenizer."""

from __future__ import annotations

import json
from typing import Any

from smt import io
from smt.pipeline.context import StageContext
from smt.synth import records
from smt.train.mixing import generation, mix, qa_item, replay_passages, targets


def run(ctx: StageContext) -> None:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(ctx.input("model"))
    streams: dict[str, list[dict[str, Any]]] = {
        "qa": [qa_item(q) for q in io.read_jsonl(ctx.input("qa"))],
        "docs": [  # every generator's documents, in params order (synth_docs.generators)
            {"id": d["id"], "doc_id": d["doc_id"], "text": records.text(d), "generator": d["generator"]}
            for path in ctx.inputs["docs"]
            for d in io.read_jsonl(path)
        ],
        "replay": replay_passages(ctx.input("replay")),
    }
    budget, qa_share, replay_fraction = ctx.budget, ctx.p("mix.qa_share"), ctx.p("mix.replay_fraction")
    goal = targets(budget, qa_share, replay_fraction)
    for name in ("qa", "docs"):
        if goal[name] and not streams[name]:
            raise ValueError(
                f"mix: stream '{name}' is empty ({', '.join(ctx.inputs[name])}) but its token target is {goal[name]}"
            )
    for items in streams.values():
        counts = tokenizer([item["text"] for item in items], add_special_tokens=False).input_ids if items else []
        for item, ids in zip(items, counts, strict=True):
            item["tokens"] = len(ids)
    mixed, report = mix(streams, budget, qa_share, replay_fraction, ctx.p("seed"))
    report["replay_corpus"] = ctx.input("replay")
    report["generation"] = generation([*ctx.inputs["qa_manifest"], *ctx.inputs["docs_manifests"]])
    report["provenance"] = ctx.provenance()
    io.write_jsonl(ctx.outputs["train"], mixed)
    io.write_json(ctx.outputs["report"], report)
    ctx.log.info("mix: %d items, %d tokens %s", len(mixed), report["total_tokens"], json.dumps(report["tokens"]))
