"""Synthetic QAs: open-ended questions about a document, answered with a short explanation.

Each document's `per_document` requests have their own seeds, so the records do not depend on shards or
batches. A completion is rejected, with its reason in the manifest, when it is empty, has no parseable question
and answer, is cut at max_new_tokens, or repeats a question already accepted for the same document.
"""

from __future__ import annotations

import re

from smt import prompts
from smt.synth import collect
from smt.synth.generation import Request, item_seed
from smt.synth.job import Job

PROMPT = "synth_qa"
GENERATOR = "qa"
PREFILL = "Question:"
_QA = re.compile(r"Question:\s*(?P<q>.+?)\s*\n+\s*Answer:\s*(?P<a>.+)", re.DOTALL)


def parse(text: str) -> tuple[str, str] | str:
    """(question, answer), or the reason the text is rejected."""
    match = _QA.search(text)
    if not match:
        return "unparseable: no 'Question:' ... 'Answer:'"
    question, answer = match["q"].strip(), match["a"].strip()
    if not question.endswith("?") or len(question) < 10:
        return "unparseable: question is not a question"
    if len(answer) < 2:
        return "empty answer"
    return question, answer


def produce(job: Job) -> collect.Outcome:
    sampling = job.sampling()
    template = prompts.load(PROMPT)
    collector = collect.Collector(GENERATOR)
    requests: list[Request] = []
    meta: dict[str, dict] = {}
    for doc in job.documents:
        content = template.format(document=collect.document_text(doc))
        for index in range(job.options["per_document"]):
            key = f"{doc['doc_id']}/qa/{index}"
            seed = item_seed(job.seed, doc["doc_id"], PROMPT, index)
            requests.append(Request(key, [{"role": "user", "content": content}], seed, prefill=PREFILL))
            meta[key] = {"doc_id": doc["doc_id"], "index": index, "seed": seed}
    collector.plan(len(requests))
    for completion in job.complete(requests, sampling, "qa"):
        info = meta[completion.key]
        parsed = collect.failure(completion, PREFILL) or parse(completion.text)
        if isinstance(parsed, str) and completion.finish_reason == "length":
            parsed = "truncated at max_new_tokens"
        if isinstance(parsed, str):
            collector.reject(completion.key, info["doc_id"], parsed, completion.text)
            continue
        question, answer = parsed
        collector.accept(
            completion,
            info["doc_id"],
            unique=question,
            index=info["index"],
            seed=info["seed"],
            question=question,
            answer=answer,
        )
    return collector.outcome({"qa": sampling}, [PROMPT])
