"""Mix synthetic QAs and documents by tokens to a budget and ratio, plus a replay share of generic text.

Token counts use the student's tokenizer. When a stream holds fewer tokens than its target, its items are
repeated in a fresh seeded order (counted in the report as repeats); at paper scale generation fills the budget.
"""

from __future__ import annotations

import random
from collections import Counter
from pathlib import Path
from typing import Any

from transformers import AutoTokenizer

from smt import io, records
from smt.context import StageContext


def replay_passages(path: str) -> list[dict[str, Any]]:
    paragraphs = [p.strip() for p in Path(path).read_text().split("\n\n") if p.strip()]
    if not paragraphs:
        raise ValueError(f"{path}: the replay corpus holds no paragraph")
    return [{"id": f"replay/{i}", "doc_id": None, "text": p} for i, p in enumerate(paragraphs)]


def take(items: list[dict[str, Any]], target: int, rng: random.Random) -> tuple[list[dict[str, Any]], int]:
    """Items in seeded order, cycling through fresh orders, until their tokens reach `target`."""
    chosen: list[dict[str, Any]] = []
    total = passes = 0
    if not items or target <= 0:
        return chosen, 0
    while total < target:
        order = items[:]
        rng.shuffle(order)
        passes += 1
        for item in order:
            if total >= target:
                break
            chosen.append(item)
            total += item["tokens"]
    return chosen, passes - 1


def run(ctx: StageContext) -> None:
    tokenizer = AutoTokenizer.from_pretrained(ctx.input("model"))
    rng = random.Random(ctx.p("seed"))
    streams: dict[str, list[dict[str, Any]]] = {
        "qa": [{"id": q["id"], "doc_id": q["doc_id"], "text": records.text(q)} for q in io.read_jsonl(ctx.input("qa"))],
        "docs": [  # every generator's documents, in params order (synth_docs.generators)
            {"id": d["id"], "doc_id": d["doc_id"], "text": records.text(d), "generator": d["generator"]}
            for path in ctx.inputs["docs"]
            for d in io.read_jsonl(path)
        ],
        "replay": replay_passages(ctx.input("replay")),
    }
    for items in streams.values():
        for item in items:
            item["tokens"] = len(tokenizer(item["text"], add_special_tokens=False).input_ids)
    budget, qa_share, replay = ctx.budget, ctx.p("mix.qa_share"), ctx.p("mix.replay_fraction")
    targets = {
        "qa": round(budget * qa_share),
        "docs": budget - round(budget * qa_share),
        "replay": round(budget * replay / (1 - replay)),
    }
    for name in ("qa", "docs"):
        if targets[name] and not streams[name]:
            raise ValueError(
                f"mix: stream '{name}' is empty ({', '.join(ctx.inputs[name])}) but its token target is {targets[name]}"
            )
    mixed: list[dict[str, Any]] = []
    report: dict[str, Any] = {"token_budget": budget, "targets": targets, "tokens": {}, "items": {}, "repeats": {}}
    for name, items in streams.items():
        chosen, repeats = take(items, targets[name], rng)
        mixed += [{**item, "stream": name} for item in chosen]
        report["tokens"][name] = sum(i["tokens"] for i in chosen)
        report["items"][name] = len(chosen)
        report["repeats"][name] = repeats
    rng.shuffle(mixed)
    io.write_jsonl(ctx.outputs["train"], mixed)
    total = sum(report["tokens"].values())
    synthetic = report["tokens"]["qa"] + report["tokens"]["docs"]
    report["total_tokens"] = total
    report["qa_share_actual"] = round(report["tokens"]["qa"] / synthetic, 4) if synthetic else 0.0
    report["replay_fraction_actual"] = round(report["tokens"]["replay"] / total, 4) if total else 0.0
    per_document: Counter[str] = Counter()
    per_generator: Counter[str] = Counter()
    for item in mixed:
        if item["doc_id"]:
            per_document[item["doc_id"]] += item["tokens"]
        if item.get("generator"):
            per_generator[item["generator"]] += item["tokens"]
    report["tokens_per_document"] = dict(sorted(per_document.items()))
    report["tokens_per_generator"] = dict(sorted(per_generator.items()))
    io.write_json(ctx.outputs["report"], report)
    ctx.log.info("mix: %d items, %d tokens (%s)", len(mixed), total, report["tokens"])
