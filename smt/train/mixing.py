"""Mixing: synthetic QAs and documents by tokens to a budget and ratio, plus a replay share of generic text.

Token counts use the student's tokenizer, on exactly the text training sees. The synthetic budget B splits into
a QA target round(B x qa_share) and a document target (the rest); replay gets round(B x f / (1 - f)) so that it
is the fraction f of the final mix. Each stream is filled item by item in a seeded order until its target is
reached, so it overshoots by less than one item (one document, QA or replay passage). When a stream holds fewer
tokens than its target, its items are repeated in a fresh seeded order (counted in the report as repeats); at
paper scale generation fills the budget. The result depends only on the inputs and `seed`.

QA items keep `prompt`, the text before the answer, so that training can put the loss on answers only
(`train.loss: answers`); documents and replay passages train on every token.
"""

from __future__ import annotations

import random
from collections import Counter
from pathlib import Path
from typing import Any

from smt import io
from smt.synth import records

STREAMS = ("qa", "docs", "replay")


def replay_passages(path: str) -> list[dict[str, Any]]:
    """Generic text to replay: a .txt file (passages separated by blank lines), or .jsonl / .parquet with a
    `text` field (e.g. a FineWeb sample)."""
    suffix = Path(path).suffix
    if suffix == ".jsonl":
        rows = io.read_jsonl(path)
    elif suffix == ".parquet":
        import polars as pl

        rows = pl.read_parquet(path).to_dicts()
    elif suffix in (".txt", ".md"):
        rows = [{"text": p} for p in Path(path).read_text().split("\n\n")]
    else:
        raise ValueError(f"{path}: mix.replay_corpus must be a .txt, .jsonl or .parquet file")
    passages = []
    for i, row in enumerate(rows):
        text = row.get("text")
        if not isinstance(text, str):
            raise ValueError(f"{path}: record {i + 1}: field 'text' is missing or not a string")
        if text.strip():
            passages.append({"id": f"replay/{i}", "doc_id": None, "text": text.strip()})
    if not passages:
        raise ValueError(f"{path}: the replay corpus holds no passage")
    return passages


def qa_item(qa: dict[str, Any]) -> dict[str, Any]:
    """A QA as training text, with the prompt (everything before the answer) for answer-only loss. The split
    sits before the whitespace that precedes the answer, so the prompt tokenizes as a prefix of the text."""
    text = records.text(qa)
    answer = qa["answer"]
    if not answer or not text.endswith(answer):
        raise ValueError(f"QA {qa.get('id')}: the answer is empty or not at the end of its text")
    return {"id": qa["id"], "doc_id": qa["doc_id"], "text": text, "prompt": text[: len(text) - len(answer)].rstrip()}


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


def targets(budget: int, qa_share: float, replay_fraction: float) -> dict[str, int]:
    qa = round(budget * qa_share)
    return {"qa": qa, "docs": budget - qa, "replay": round(budget * replay_fraction / (1 - replay_fraction))}


def mix(
    streams: dict[str, list[dict[str, Any]]], budget: int, qa_share: float, replay_fraction: float, seed: int
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """The shuffled mix and its report, from items that already carry their `tokens`."""
    rng = random.Random(seed)
    goal = targets(budget, qa_share, replay_fraction)
    for name in STREAMS:
        if goal[name] and not streams[name]:
            raise ValueError(f"mix: stream '{name}' is empty but its token target is {goal[name]}")
    mixed: list[dict[str, Any]] = []
    report: dict[str, Any] = {
        "token_budget": budget,
        "targets": goal,
        "tokens": {},
        "items": {},
        "repeats": {},
        "available_tokens": {name: sum(i["tokens"] for i in streams[name]) for name in STREAMS},
    }
    for name in STREAMS:
        chosen, repeats = take(streams[name], goal[name], rng)
        mixed += [{**item, "stream": name} for item in chosen]
        report["tokens"][name] = sum(i["tokens"] for i in chosen)
        report["items"][name] = len(chosen)
        report["repeats"][name] = repeats
    rng.shuffle(mixed)
    total = sum(report["tokens"].values())
    synthetic = report["tokens"]["qa"] + report["tokens"]["docs"]
    report["total_tokens"] = total
    report["synthetic_tokens"] = synthetic
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
    return mixed, report


def generation(manifests: list[str]) -> dict[str, Any]:
    """What the synthetic data behind this mix cost to generate (for C = 2MD): completion tokens per manifest
    and the generator models. Shared by every budget of a benchmark: each mix draws from the same streams."""
    found: dict[str, Any] = {"completion_tokens": 0, "manifests": [], "models": [], "backends": []}
    for path in manifests:
        manifest = io.read_json(path)
        tokens = int(manifest.get("generation", {}).get("completion_tokens", 0))
        found["manifests"].append({"path": path, "completion_tokens": tokens})
        found["completion_tokens"] += tokens
        model = manifest.get("model", {})
        entry = {"id": model.get("id"), "path": model.get("path"), "revision": model.get("revision")}
        if entry not in found["models"]:
            found["models"].append(entry)
        if manifest.get("backend") and manifest["backend"] not in found["backends"]:
            found["backends"].append(manifest["backend"])
    return found
