"""Active Reading: each item applies one of the document's learning strategies (cycling through them)."""

from __future__ import annotations

from typing import Any

from smt import prompts
from smt.synth import collect
from smt.synth.generation import Request, item_seed
from smt.synth.generators import accept_document, strategies, user_request
from smt.synth.job import Job

NAME = "active_reading"


def produce(job: Job) -> collect.Outcome:
    opts = job.options
    collector = collect.Collector(NAME)
    found, strategy_sampling = strategies.learn(job, collector, job.documents, opts["strategies_max_new_tokens"])
    template = prompts.load(NAME)
    requests: list[Request] = []
    meta: dict[str, dict[str, Any]] = {}
    for doc in job.documents:
        doc_id = doc["doc_id"]
        for i in range(opts["per_document"]):
            key, seed = f"{doc_id}/{NAME}/{i}", item_seed(job.seed, doc_id, NAME, i)
            strategy = found[doc_id][i % len(found[doc_id])]
            text = collect.document_text(doc)
            requests.append(user_request(key, template, seed, document=text, title=doc["title"], strategy=strategy))
            meta[key] = {"doc_id": doc_id, "strategy": strategy, "seed": seed}
    collector.plan(len(requests))
    sampling = job.sampling()
    for completion in job.complete(requests, sampling, NAME):
        accept_document(collector, completion, **meta[completion.key])
    return collector.outcome({"strategies": strategy_sampling, "documents": sampling}, [strategies.PROMPT, NAME])
