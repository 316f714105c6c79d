"""Focal Rewriting: Active Reading's second step with focus on a question generated for the same document in
the QA stream (results/synth/<benchmark>/qa.jsonl), never a benchmark question.

Pairing of strategies and questions (`pairing`): `sampled` draws a (strategy, question) pair per item from the
item's seed; `grid` walks every strategy for the first question, then the second, and so on.
"""

from __future__ import annotations

import random
from typing import Any

from smt import io, prompts
from smt.synth import collect
from smt.synth.generation import Request, item_seed
from smt.synth.generators import accept_document, strategies, user_request
from smt.synth.job import Job

NAME = "focal_rewrite"
PAIRINGS = ("sampled", "grid")


def questions_by_document(path: str) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for qa in io.read_jsonl(path):
        found.setdefault(qa["doc_id"], []).append(qa["question"])
    return found


def pair(found: list[str], pool: list[str], index: int, seed: int, pairing: str) -> tuple[str, str]:
    """The (strategy, question) of item `index`."""
    if pairing == "grid":
        return found[index % len(found)], pool[(index // len(found)) % len(pool)]
    pick = random.Random(seed)
    return pick.choice(found), pick.choice(pool)


def produce(job: Job) -> collect.Outcome:
    opts = job.options
    collector = collect.Collector(NAME)
    questions = questions_by_document(job.questions)
    with_questions = [d for d in job.documents if questions.get(d["doc_id"])]
    found, strategy_sampling = strategies.learn(job, collector, with_questions, opts["strategies_max_new_tokens"])
    template = prompts.load(NAME)
    requests: list[Request] = []
    meta: dict[str, dict[str, Any]] = {}
    for doc in job.documents:
        doc_id = doc["doc_id"]
        for i in range(opts["per_document"]):
            key, seed = f"{doc_id}/{NAME}/{i}", item_seed(job.seed, doc_id, NAME, i)
            collector.plan()
            if doc_id not in found:
                collector.reject(key, doc_id, "no generated question for this document")
                continue
            strategy, question = pair(found[doc_id], questions[doc_id], i, seed, opts["pairing"])
            fields = {"document": collect.document_text(doc), "title": doc["title"], "strategy": strategy}
            requests.append(user_request(key, template, seed, question=question, **fields))
            meta[key] = {"doc_id": doc_id, "strategy": strategy, "question": question, "seed": seed}
    sampling = job.sampling()
    for completion in job.complete(requests, sampling, NAME):
        accept_document(collector, completion, **meta[completion.key])
    return collector.outcome({"strategies": strategy_sampling, "documents": sampling}, [strategies.PROMPT, NAME])
