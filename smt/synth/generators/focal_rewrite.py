"""Focal Rewriting: Active Reading's second step with focus on a question generated for the same document in
the QA stream (results/synth/<benchmark>/qa.jsonl), never a benchmark question.

Pairing of strategies and questions (`pairing`): `sampled` draws a (strategy, question) pair per item from the
item's seed; `grid` walks every strategy for the first question, then the second, and so on.
"""

from __future__ import annotations

import dataclasses
import random
from typing import Any

from smt import io, prompts
from smt.synth import collect, rounds, sections
from smt.synth.generation import item_seed
from smt.synth.generators import accept_document, strategies, user_request
from smt.synth.job import Job

NAME = "focal_rewrite"
PAIRINGS = ("sampled", "grid")


def questions_by_document(path: str) -> dict[str, list[str]]:
    """Generated questions by the unit they were asked about (a document, or a section of a long one)."""
    found: dict[str, list[str]] = {}
    for qa in io.read_jsonl(path):
        found.setdefault(sections.unit_of(qa), []).append(qa["question"])
    return found


def pair(found: list[str], pool: list[str], index: int, seed: int, pairing: str) -> tuple[str, str]:
    """The (strategy, question) of item `index`."""
    if pairing == "grid":
        return found[index % len(found)], pool[(index // len(found)) % len(pool)]
    pick = random.Random(seed)
    return pick.choice(found), pick.choice(pool)


def produce(job: Job) -> collect.Outcome:
    collector = collect.Collector(NAME)
    questions = questions_by_document(job.questions)
    for doc in job.documents:
        if not questions.get(doc["doc_id"]):
            collector.plan()
            collector.reject(f"{doc['doc_id']}/{NAME}", doc["doc_id"], "no generated question for this document")
    asking = dataclasses.replace(job, documents=[d for d in job.documents if questions.get(d["doc_id"])])
    learned = strategies.Strategies(asking, collector)
    template = prompts.load(NAME)
    sampling = job.sampling()

    def build(doc: dict[str, Any], start: int, n: int) -> list[rounds.Item]:
        doc_id, items = doc["doc_id"], []
        for i in range(start, start + n):
            key, seed = f"{doc_id}/{NAME}/{i}", item_seed(job.seed, doc_id, NAME, i)
            strategy, question = pair(learned.for_item(doc_id, i), questions[doc_id], i, seed, job.options["pairing"])
            learned.use(doc_id, strategy)
            fields = {"document": collect.document_text(doc), "title": doc["title"], "strategy": strategy}
            request = user_request(key, template, seed, question=question, **fields)
            items.append(
                rounds.Item(request, {"doc_id": doc_id, "strategy": strategy, "question": question, "seed": seed})
            )
        return items

    def accept(completion: Any, meta: dict[str, Any]) -> int:
        return accept_document(collector, completion, **meta)

    rounds.run(asking, collector, NAME, sampling, job.options["per_document"], build, accept, before=learned.prepare)
    return collector.outcome({"strategies": learned.sampling, "documents": sampling}, [strategies.PROMPT, NAME])
