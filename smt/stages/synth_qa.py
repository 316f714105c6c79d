"""Synthetic QAs: open-ended questions about a document, answered with a short explanation.

Sharded and resumable (smt/shards.py): each document's `synth_qa.per_document` requests have their own seeds,
so the records do not depend on shards or batches. A completion is rejected, with its reason in the manifest,
when it is empty, has no parseable question and answer, is cut at max_new_tokens, or repeats a question already
accepted for the same document.
"""

from __future__ import annotations

import re

from smt import prompts, shards, synth
from smt.context import StageContext
from smt.generation import Request, Sampling, item_seed

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


def produce(run: shards.ShardRun) -> synth.Outcome:
    ctx = run.ctx
    sampling = Sampling(ctx.p("synth_qa.temperature"), ctx.p("synth_qa.top_p"), ctx.p("synth_qa.max_new_tokens"))
    template = prompts.load(PROMPT)
    collect = synth.Collector(GENERATOR)
    requests: list[Request] = []
    meta: dict[str, dict] = {}
    for doc in run.documents:
        content = template.format(document=synth.document_text(doc))
        for index in range(ctx.p("synth_qa.per_document")):
            key = f"{doc['doc_id']}/qa/{index}"
            seed = item_seed(run.seed, doc["doc_id"], PROMPT, index)
            requests.append(Request(key, [{"role": "user", "content": content}], seed, prefill=PREFILL))
            meta[key] = {"doc_id": doc["doc_id"], "index": index, "seed": seed}
    collect.plan(len(requests))
    for completion in run.complete(requests, sampling, step="qa"):
        info = meta[completion.key]
        parsed = synth.failure(completion, PREFILL) or parse(completion.text)
        if isinstance(parsed, str) and completion.finish_reason == "length":
            parsed = "truncated at max_new_tokens"
        if isinstance(parsed, str):
            collect.reject(completion.key, info["doc_id"], parsed, completion.text)
            continue
        question, answer = parsed
        collect.accept(
            completion,
            info["doc_id"],
            unique=question,
            index=info["index"],
            seed=info["seed"],
            question=question,
            answer=answer,
        )
    return collect.outcome({"qa": sampling}, [PROMPT])


def run(ctx: StageContext) -> None:
    shards.run(ctx, produce, records="qa")
