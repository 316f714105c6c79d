"""WRAP: the document rephrased in a style (after "Rephrasing the Web", Maini et al. 2024): item i uses the
i-th style of `styles`, cycling. Each style is a section of smt/prompts/wrap.txt."""

from __future__ import annotations

from typing import Any

from smt import prompts
from smt.synth import collect, rounds
from smt.synth.generation import item_seed
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
    sampling = job.sampling()

    def build(doc: dict[str, Any], start: int, n: int) -> list[rounds.Item]:
        doc_id, items = doc["doc_id"], []
        for i in range(start, start + n):
            key, seed = f"{doc_id}/{NAME}/{i}", item_seed(job.seed, doc_id, NAME, i)
            style = opts["styles"][i % len(opts["styles"])]
            text = collect.document_text(doc)
            request = user_request(key, styles[style], seed, document=text, title=doc["title"])
            items.append(rounds.Item(request, {"doc_id": doc_id, "style": style, "seed": seed}))
        return items

    def accept(completion: Any, meta: dict[str, Any]) -> int:
        return accept_document(collector, completion, **meta)

    rounds.run(job, collector, NAME, sampling, opts["per_document"], build, accept)
    return collector.outcome({"documents": sampling}, [NAME])
