"""Active Reading: each item applies one of the document's learning strategies (cycling through the item's list,
which is refreshed every `strategies_every` items), in rounds until the document holds its share of the stream's
token target."""

from __future__ import annotations

from typing import Any

from smt import prompts
from smt.synth import collect, rounds
from smt.synth.generation import item_seed
from smt.synth.generators import accept_document, strategies, user_request
from smt.synth.job import Job

NAME = "active_reading"


def produce(job: Job) -> collect.Outcome:
    collector = collect.Collector(NAME)
    learned = strategies.Strategies(job, collector)
    template = prompts.load(NAME)
    sampling = job.sampling()

    def build(doc: dict[str, Any], start: int, n: int) -> list[rounds.Item]:
        items = []
        for i in range(start, start + n):
            doc_id = doc["doc_id"]
            key, seed = f"{doc_id}/{NAME}/{i}", item_seed(job.seed, doc_id, NAME, i)
            found = learned.for_item(doc_id, i)
            strategy = found[i % learned.every % len(found)]
            learned.use(doc_id, strategy)
            text = collect.document_text(doc)
            request = user_request(key, template, seed, document=text, title=doc["title"], strategy=strategy)
            items.append(rounds.Item(request, {"doc_id": doc_id, "strategy": strategy, "seed": seed}))
        return items

    def accept(completion: Any, meta: dict[str, Any]) -> int:
        return accept_document(collector, completion, **meta)

    rounds.run(job, collector, NAME, sampling, job.options["per_document"], build, accept, before=learned.prepare)
    return collector.outcome({"strategies": learned.sampling, "documents": sampling}, [strategies.PROMPT, NAME])
