"""Synthetic QAs: open-ended questions about a document, answered with a short explanation.

Each document's `per_document` requests have their own seeds, so the records do not depend on shards or
batches. A completion is rejected, with its reason in the manifest, when it is empty, has no parseable question
and answer, is cut at max_new_tokens, or repeats a question already accepted for the same document.
"""

from __future__ import annotations

import re
from typing import Any

from smt import prompts
from smt.synth import collect, rounds
from smt.synth.generation import Completion, Request, item_seed
from smt.synth.job import Job

PROMPT = "synth_qa"
GENERATOR = "qa"
PREFILL = "Question:"
_QA = re.compile(r"Question:\s*(?P<q>.+?)\s*\n+\s*Answer:\s*(?P<a>.+?)\s*(?=\n\s*Question:|\Z)", re.DOTALL)


def parse_pair(question: str, answer: str) -> tuple[str, str] | str:
    """(question, answer), or the reason the pair is rejected."""
    question, answer = " ".join(question.split()), answer.strip()
    if not question.endswith("?") or len(question) < 10:
        return "unparseable: question is not a question"
    if len(answer) < 2:
        return "empty answer"
    return question, answer


def parse(text: str) -> list[tuple[str, str] | str]:
    """Every 'Question: ... Answer: ...' pair in a completion, each parsed or with the reason it is rejected."""
    return [parse_pair(m["q"], m["a"]) for m in _QA.finditer(text)]


def produce(job: Job) -> collect.Outcome:
    """Open-ended QAs, `per_request` pairs asked for in each request, in rounds until every document holds its
    share of the stream's token target (smt.synth.rounds). Each pair is its own record; a pair that is missing,
    malformed, cut off or a repeat is rejected with its reason."""
    sampling = job.sampling()
    template = prompts.load(PROMPT)
    count = job.options["per_request"]
    collector = collect.Collector(GENERATOR)

    def build(doc: dict[str, Any], start: int, n: int) -> list[rounds.Item]:
        content = template.format(document=collect.document_text(doc), title=doc["title"], count=count)
        items = []
        for index in range(start, start + n):
            key, seed = f"{doc['doc_id']}/qa/{index}", item_seed(job.seed, doc["doc_id"], PROMPT, index)
            request = Request(key, [{"role": "user", "content": content}], seed, prefill=PREFILL)
            items.append(rounds.Item(request, {"doc_id": doc["doc_id"], "index": index, "seed": seed}))
        return items

    def accept(completion: Completion, meta: dict[str, Any]) -> int:
        failed = collect.failure(completion, PREFILL)
        pairs: list[tuple[str, str] | str] = [failed] if failed else parse(completion.text)
        if completion.finish_reason == "length" and pairs and not failed:
            pairs[-1] = "truncated at max_new_tokens"  # the last pair may be cut short
        pairs = (pairs + ["missing: fewer pairs than asked"] * count)[:count]
        kept = 0
        for n, pair in enumerate(pairs):
            key = f"{completion.key}/{n}"
            if isinstance(pair, str):
                collector.reject(key, meta["doc_id"], pair, completion.text if n == 0 else "")
            elif collector.accept(
                completion,
                meta["doc_id"],
                unique=pair[0],
                key=key,
                index=meta["index"],
                pair=n,
                seed=meta["seed"],
                question=pair[0],
                answer=pair[1],
            ):
                kept += 1
        return round(completion.completion_tokens * kept / count)

    rounds.run(job, collector, GENERATOR, sampling, job.options["per_document"], build, accept, planned=count)
    return collector.outcome({"qa": sampling}, [PROMPT])
