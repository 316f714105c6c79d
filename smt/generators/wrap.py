"""WRAP: the document rephrased in a style (after "Rephrasing the Web", Maini et al. 2024): item i uses the
i-th style of `styles`, cycling. Each style is a section of smt/prompts/wrap.txt."""

from __future__ import annotations

from typing import Any

from smt import prompts, synth
from smt.generation import Request, item_seed
from smt.generators import accept_document, document_sampling, options, user_request

NAME = "wrap"


def produce(run: Any) -> synth.Outcome:
    opts = options(run, NAME)
    styles = prompts.sections(NAME)
    unknown = sorted(set(opts["styles"]) - set(styles))
    if unknown:
        raise ValueError(f"synth_docs.generators.wrap.styles: unknown {unknown}; available: {sorted(styles)}")
    collect = synth.Collector(NAME)
    requests: list[Request] = []
    meta: dict[str, dict[str, Any]] = {}
    for doc in run.documents:
        doc_id = doc["doc_id"]
        for i in range(opts["per_document"]):
            key, seed = f"{doc_id}/{NAME}/{i}", item_seed(run.seed, doc_id, NAME, i)
            style = opts["styles"][i % len(opts["styles"])]
            text = synth.document_text(doc)
            requests.append(user_request(key, styles[style], seed, document=text, title=doc["title"]))
            meta[key] = {"doc_id": doc_id, "style": style, "seed": seed}
    collect.plan(len(requests))
    sampling = document_sampling(run)
    for completion in run.complete(requests, sampling, step=NAME):
        accept_document(collect, completion, **meta[completion.key])
    return collect.outcome({"documents": sampling}, [NAME])
