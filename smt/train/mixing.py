"""Mixing: a recipe's synthetic streams by their token shares of a budget, plus a replay share of generic text.

Token counts use the student's tokenizer, on exactly the text training sees. A budget B gives each stream of the
recipe round(B x share) tokens; replay gets round(B x f / (1 - f)) so that it is the fraction f of the final
mix. Each stream is filled item by item in a seeded order until it reaches its target, so it overshoots by less
than one item (one document, QA or replay passage). Generation is sized to the budget (smt.pipeline.targets), so
a stream normally holds its target in unique items; when it does not, its items are repeated in fresh seeded
orders, and a repeat share above `max_repeat_fraction` fails the mix, naming the stream and its shortfall. The
report separates unique and repeated tokens per stream; the scaling fit uses unique synthetic tokens. The result
depends only on the inputs and `seed`.

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

REPLAY = "replay"


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


def count_tokens(streams: dict[str, list[dict[str, Any]]], tokenizer: Any) -> None:
    """Give every item its `tokens`: the student tokenizer's count of exactly the text training sees."""
    for items in streams.values():
        counts = tokenizer([i["text"] for i in items], add_special_tokens=False).input_ids if items else []
        for item, ids in zip(items, counts, strict=True):
            item["tokens"] = len(ids)


def take(items: list[dict[str, Any]], target: int, rng: random.Random) -> tuple[list[dict[str, Any]], int]:
    """Items in seeded order, cycling through fresh orders, until their tokens reach `target`; and how many of
    the chosen tokens are repeats (items taken a second time or more)."""
    chosen: list[dict[str, Any]] = []
    total = repeated = passes = 0
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
            repeated += item["tokens"] if passes > 1 else 0
    return chosen, repeated


def targets(budget: int, shares: dict[str, float], replay_fraction: float) -> dict[str, int]:
    goal = {name: round(budget * share) for name, share in shares.items()}
    goal[REPLAY] = round(budget * replay_fraction / (1 - replay_fraction))
    return goal


def mix(
    streams: dict[str, list[dict[str, Any]]],
    budget: int,
    shares: dict[str, float],
    replay_fraction: float,
    seed: int,
    max_repeat_fraction: float = 0.0,
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """The shuffled mix and its report, from items that already carry their `tokens`; `streams` holds the
    recipe's synthetic streams (by their names in the recipe) and `replay`."""
    rng = random.Random(seed)
    goal = targets(budget, shares, replay_fraction)
    for name, target in goal.items():
        if target and not streams[name]:
            raise ValueError(f"mix: stream '{name}' is empty but its token target is {target}")
    mixed: list[dict[str, Any]] = []
    report: dict[str, Any] = {
        "token_budget": budget,
        "shares": shares,
        "targets": goal,
        "tokens": {},
        "unique_tokens": {},
        "repeated_tokens": {},
        "items": {},
        "available_tokens": {name: sum(i["tokens"] for i in items) for name, items in streams.items()},
    }
    for name in goal:
        chosen, repeated = take(streams[name], goal[name], rng)
        tokens = sum(i["tokens"] for i in chosen)
        if name != REPLAY and tokens and repeated / tokens > max_repeat_fraction + 1e-12:
            available = report["available_tokens"][name]
            raise ValueError(
                f"mix: stream '{name}' holds {available} unique tokens but its target is {goal[name]} "
                f"(shortfall {goal[name] - available}); {repeated / tokens:.1%} of its tokens would be repeats, above "
                f"mix.max_repeat_fraction = {max_repeat_fraction}. Generate more (generation.target_margin, "
                "generation.max_rounds) or allow repeats."
            )
        mixed += [{**item, "stream": name} for item in chosen]
        report["tokens"][name] = tokens
        report["unique_tokens"][name] = tokens - repeated
        report["repeated_tokens"][name] = repeated
        report["items"][name] = len(chosen)
    rng.shuffle(mixed)
    synthetic = [name for name in goal if name != REPLAY]
    total = sum(report["tokens"].values())
    report["total_tokens"] = total
    report["synthetic_tokens"] = sum(report["tokens"][n] for n in synthetic)
    report["unique_synthetic_tokens"] = sum(report["unique_tokens"][n] for n in synthetic)
    report["shares_actual"] = {
        n: round(report["tokens"][n] / report["synthetic_tokens"], 4) if report["synthetic_tokens"] else 0.0
        for n in synthetic
    }
    report["replay_fraction_actual"] = round(report["tokens"][REPLAY] / total, 4) if total else 0.0
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
