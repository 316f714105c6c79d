"""Generation sized to a token target, document by document, in rounds.

How much a stream generates follows from the recipes and budgets that use it (smt.pipeline.targets): each
document should hold its share of the stream's target, counted in the completion tokens of accepted items. The
first round asks for a fixed number of items per document; each later round asks a document for as many more as
its accepted tokens per item asked so far (rejected items included) say it still needs, but at most as many as it
has asked so far (a document with nothing accepted yet asks for twice as many as in its last round), until it
reaches its share or `max_rounds` runs out (the manifest counts the documents left short). The cap matters for a
small generator: a rate read from three items, one of them accepted and short, can ask for forty more where ten
would do (measured on the embedded default: one document's Active Reading asked 39 rewrites and kept 7 times its
share), while doubling at most costs a round only where the first rate was right. Item i of a document always has
the same key and seed, and a document's rounds depend only on its own items, so the records do not depend on the
shard count or the batch.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from smt.synth import collect
from smt.synth.generation import Completion, Request, Sampling
from smt.synth.job import Job

MAX_PER_ROUND = 1000  # items one document may ask for in one round


@dataclass
class Item:
    request: Request
    meta: dict[str, Any]  # kept with the completion; must name the item's `doc_id`


def ask(target: int, made: int, asked: int, first: int, round_number: int) -> int:
    """Items a document asks for in round `round_number` (from 1), having accepted `made` tokens of its `target`
    from the `asked` items of its earlier rounds."""
    count = first
    if round_number > 1 and made:  # sized from the tokens each item asked so far yielded, rejects too; at most double
        count = min(math.ceil((target - made) / (made / asked)), asked)
    elif round_number > 1:  # nothing accepted yet: no rate to size from, so twice the last round's ask
        count = first * 2 ** (round_number - 1)
    return min(max(count, 1), MAX_PER_ROUND)


def run(
    job: Job,
    collector: collect.Collector,
    step: str,
    sampling: Sampling,
    first: int,
    build: Callable[[dict[str, Any], int, int], list[Item]],
    accept: Callable[[Completion, dict[str, Any]], int],
    planned: int = 1,
    before: Callable[[list[tuple[dict[str, Any], int, int]]], None] | None = None,
) -> None:
    """Generate in rounds. `build(doc, start, count)` makes the items with indices start..start+count-1 (fewer,
    or none, when the document has no more to give); `accept(completion, meta)` records the outcome and returns
    the tokens it accepted. Each request plans `planned` items (several QA pairs per request). `before` sees
    every (doc, start, count) of a round first, to batch what the items need (strategy lists)."""
    target = job.target_per_document
    made = {d["doc_id"]: 0 for d in job.documents}
    asked = dict.fromkeys(made, 0)
    rounds = 0
    for rounds in range(1, job.max_rounds + 1):
        wanted = []
        for doc in job.documents:
            doc_id = doc["doc_id"]
            if rounds > 1 and (not target or made[doc_id] >= target):
                continue
            count = ask(target, made[doc_id], asked[doc_id], first, rounds)
            wanted.append((doc, asked[doc_id], count))
        if before and wanted:
            before(wanted)
        items: list[Item] = []
        for doc, start, count in wanted:
            fresh = build(doc, start, count)
            asked[doc["doc_id"]] += len(fresh)
            items += fresh
        if not items:
            rounds -= 1
            break
        collector.plan(len(items) * planned)
        meta = {item.request.key: item.meta for item in items}
        for completion in job.complete([item.request for item in items], sampling, step):
            gained = accept(completion, meta[completion.key])
            made[meta[completion.key]["doc_id"]] += gained
    collector.counts["rounds"] = max(collector.counts.get("rounds", 0), rounds)
    collector.counts["target_tokens_per_document"] = target
    collector.counts["documents_short_of_target"] = sum(1 for d in made if target and made[d] < target)
