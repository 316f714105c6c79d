"""WRAP: the document rephrased in a style (after "Rephrasing the Web", Maini et al. 2024): item i uses the
i-th style of `styles`, cycling. Each style is a section of smt/prompts/wrap.txt."""

from __future__ import annotations

from typing import Any

from smt import prompts
from smt.synth import collect
from smt.synth.generation import Request, item_seed
from smt.synth.generators import accept_document, user_request
from smt.synth.job import Job

NAME = "wrap"


def produce(job: Job) -> collect.Outcome:
    opts = job.options
    styles = prompts.sections(NAME)
    unknown = sorted(set(opts["styles"]) - set(styles))
    if unknown:
        raise ValueError(f"synth_docs.generators.wrap.styles: unknown {unknown}; available: {sorted(styles)}")
    collector = collect.Collector(NAME)
    requests: list[Request] = []
    meta: dict[str, dict[str, Any]] = {}
    for doc in job.documents:
        doc_id = doc["doc_id"]
        for i in range(opts["per_document"]):
            key, seed = f"{doc_id}/{NAME}/{i}", item_seed(job.seed, doc_id, NAME, i)
            style = opts["styles"][i % len(opts["styles"])]
            text = collect.document_text(doc)
            requests.append(user_request(key, styles[style], seed, document=text, title=doc["title"]))
            meta[key] = {"doc_id": doc_id, "style": style, "seed": seed}
    collector.plan(len(requests))
    sampling = job.sampling()
    for completion in job.complete(requests, sampling, NAME):
        accept_document(collector, completion, **meta[completion.key])
    return collector.outcome({"documents": sampling}, [NAME])
