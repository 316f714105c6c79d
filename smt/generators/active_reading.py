"""Active Reading: each item applies one of the document's learning strategies (cycling through them)."""

from __future__ import annotations

from typing import Any

from smt import prompts, synth
from smt.generation import Request, item_seed
from smt.generators import accept_document, document_sampling, options, strategies, user_request

NAME = "active_reading"


def produce(run: Any) -> synth.Outcome:
    opts = options(run, NAME)
    collect = synth.Collector(NAME)
    found, strategy_sampling = strategies.learn(run, collect, run.documents, opts["strategies_max_new_tokens"])
    template = prompts.load(NAME)
    requests: list[Request] = []
    meta: dict[str, dict[str, Any]] = {}
    for doc in run.documents:
        doc_id = doc["doc_id"]
        for i in range(opts["per_document"]):
            key, seed = f"{doc_id}/{NAME}/{i}", item_seed(run.seed, doc_id, NAME, i)
            strategy = found[doc_id][i % len(found[doc_id])]
            text = synth.document_text(doc)
            requests.append(user_request(key, template, seed, document=text, title=doc["title"], strategy=strategy))
            meta[key] = {"doc_id": doc_id, "strategy": strategy, "seed": seed}
    collect.plan(len(requests))
    sampling = document_sampling(run)
    for completion in run.complete(requests, sampling, step=NAME):
        accept_document(collect, completion, **meta[completion.key])
    return collect.outcome({"strategies": strategy_sampling, "documents": sampling}, [strategies.PROMPT, NAME])
