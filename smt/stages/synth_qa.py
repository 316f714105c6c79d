"""Synthetic QAs: open-ended questions about a document, answered with a short explanation."""

from __future__ import annotations

import re
import time
from typing import Any

from smt import io, prompts, synth
from smt.context import StageContext
from smt.generation import Request, Sampling, item_seed

PROMPT = "synth_qa"
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


def run(ctx: StageContext) -> None:
    started = time.time()
    sampling = Sampling(ctx.p("synth_qa.temperature"), ctx.p("synth_qa.top_p"), ctx.p("synth_qa.max_new_tokens"))
    template = prompts.load(PROMPT)
    requests: list[Request] = []
    meta: dict[str, dict[str, Any]] = {}
    for doc in synth.documents(ctx):
        for index in range(ctx.p("synth_qa.per_document")):
            key = f"{doc['doc_id']}/qa/{index}"
            seed = item_seed(ctx.p("seed"), doc["doc_id"], PROMPT, index)
            content = template.format(document=synth.document_text(doc))
            requests.append(Request(key, [{"role": "user", "content": content}], seed, prefill="Question:"))
            meta[key] = {"doc_id": doc["doc_id"], "index": index, "seed": seed}
    backend = synth.generator(ctx)
    accepted: list[dict[str, Any]] = []
    rejected: list[dict[str, Any]] = []
    seen: set[tuple[str, str]] = set()
    for completion in backend.generate(requests, sampling, desc=f"synth_qa {ctx.benchmark}"):
        parsed = parse(completion.text)
        info = meta[completion.key]
        if isinstance(parsed, str) and completion.finish_reason == "length":
            parsed = "truncated at max_new_tokens"
        if not isinstance(parsed, str) and (info["doc_id"], parsed[0].lower()) in seen:
            parsed = "duplicate question"
        if isinstance(parsed, str):
            rejected.append({"id": completion.key, "reason": parsed, "text": completion.text[:500]})
            continue
        seen.add((info["doc_id"], parsed[0].lower()))
        accepted.append(
            {
                "id": completion.key,
                **info,
                "question": parsed[0],
                "answer": parsed[1],
                "finish_reason": completion.finish_reason,
                "completion_tokens": completion.completion_tokens,
            }
        )
    io.write_jsonl(ctx.outputs["qa"], accepted)
    synth.write_manifest(
        ctx,
        model_dir=ctx.input("model"),
        sampling={"qa": sampling},
        prompt_names=[PROMPT],
        stats=backend.stats,
        rejected=rejected,
        started=started,
        counts={"requested": len(requests), "accepted": len(accepted), "rejected": len(rejected)},
    )
    ctx.log.info("synth_qa: %d accepted, %d rejected", len(accepted), len(rejected))
