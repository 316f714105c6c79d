"""Synthetic documents: Active Reading (strategies, then applying one) and Focal Rewriting.

Focal Rewriting is Active Reading's second step with one added instruction, "with focus on the question: {q}",
where q is a question generated in the synthetic-QA stream for the same document, never a benchmark question.
"""

from __future__ import annotations

import random
import re
import time
from typing import Any

from smt import io, prompts, synth
from smt.context import StageContext
from smt.generation import Completion, Request, Sampling, item_seed

STRATEGIES, APPLY, FOCAL = "active_reading_strategies", "active_reading_apply", "focal_rewrite"
# Used only when the generator lists no parseable strategy for a document; counted in the manifest.
FALLBACK_STRATEGIES = (
    "Summarize the document paragraph by paragraph, keeping every name, number and date.",
    "Write questions a teacher would ask about the document, each followed by its answer.",
)
MIN_WORDS = 20


def parse_strategies(text: str) -> list[str]:
    """Split a markdown list of strategies on '##' headings."""
    parts = [re.sub(r"\s+", " ", p).strip(" #*-:") for p in re.split(r"(?m)^\s*##+", text)]
    return [p for p in parts if len(p.split()) >= 3]


def check_document(completion: Completion) -> str | None:
    """The reason a generated document is rejected, or None."""
    if completion.finish_reason == "length" and len(completion.text.split()) < MIN_WORDS:
        return "truncated at max_new_tokens"
    if len(completion.text.split()) < MIN_WORDS:
        return f"too short (< {MIN_WORDS} words)"
    return None


def _request(key: str, template: str, seed: int, **fields: str) -> Request:
    return Request(key, [{"role": "user", "content": template.format(**fields)}], seed)


def run(ctx: StageContext) -> None:
    started = time.time()
    seed = ctx.p("seed")
    strategy_sampling = Sampling(
        ctx.p("synth_docs.temperature"), ctx.p("synth_docs.top_p"), ctx.p("synth_docs.strategies_max_new_tokens")
    )
    doc_sampling = Sampling(
        ctx.p("synth_docs.temperature"), ctx.p("synth_docs.top_p"), ctx.p("synth_docs.max_new_tokens")
    )
    docs = synth.documents(ctx)
    questions: dict[str, list[str]] = {}
    for qa in io.read_jsonl(ctx.input("qa")):
        questions.setdefault(qa["doc_id"], []).append(qa["question"])
    backend = synth.generator(ctx)
    rejected: list[dict[str, Any]] = []

    # Stage 1: learning strategies per document.
    strategy_requests = [
        Request(
            f"{d['doc_id']}/strategies",
            [{"role": "user", "content": prompts.load(STRATEGIES).format(document=synth.document_text(d))}],
            item_seed(seed, d["doc_id"], STRATEGIES, 0),
            prefill="## ",
        )
        for d in docs
    ]
    strategies: dict[str, list[str]] = {}
    fallbacks = 0
    for d, completion in zip(
        docs, backend.generate(strategy_requests, strategy_sampling, desc="strategies"), strict=False
    ):
        found = parse_strategies(completion.text)
        if not found:
            rejected.append({"id": completion.key, "reason": "no parseable strategy", "text": completion.text[:500]})
            found, fallbacks = list(FALLBACK_STRATEGIES), fallbacks + 1
        strategies[d["doc_id"]] = found

    # Stage 2: apply strategies (Active Reading) and strategy x question pairs (Focal Rewriting).
    requests: list[Request] = []
    meta: dict[str, dict[str, Any]] = {}
    for d in docs:
        doc_id, text, found = d["doc_id"], synth.document_text(d), strategies[d["doc_id"]]
        for i in range(ctx.p("synth_docs.active_reading_per_document")):
            key, s = f"{doc_id}/active_reading/{i}", item_seed(seed, doc_id, APPLY, i)
            strategy = found[i % len(found)]
            requests.append(_request(key, prompts.load(APPLY), s, document=text, title=d["title"], strategy=strategy))
            meta[key] = {"doc_id": doc_id, "generator": "active_reading", "strategy": strategy, "seed": s}
        pool = questions.get(doc_id, [])
        for i in range(ctx.p("synth_docs.focal_per_document") if pool else 0):
            key, s = f"{doc_id}/focal_rewrite/{i}", item_seed(seed, doc_id, FOCAL, i)
            pick = random.Random(s)
            strategy, question = pick.choice(found), pick.choice(pool)
            requests.append(
                _request(
                    key, prompts.load(FOCAL), s, document=text, title=d["title"], strategy=strategy, question=question
                )
            )
            meta[key] = {
                "doc_id": doc_id,
                "generator": "focal_rewrite",
                "strategy": strategy,
                "question": question,
                "seed": s,
            }
        if not pool and ctx.p("synth_docs.focal_per_document"):
            rejected.append({"id": f"{doc_id}/focal_rewrite", "reason": "no generated question for this document"})

    accepted: list[dict[str, Any]] = []
    for completion in backend.generate(requests, doc_sampling, desc="rewrites"):
        reason = check_document(completion)
        if reason:
            rejected.append({"id": completion.key, "reason": reason, "text": completion.text[:500]})
            continue
        accepted.append(
            {
                "id": completion.key,
                **meta[completion.key],
                "text": completion.text.strip(),
                "finish_reason": completion.finish_reason,
                "completion_tokens": completion.completion_tokens,
            }
        )
    io.write_jsonl(ctx.outputs["docs"], accepted)
    by_generator = {g: sum(1 for a in accepted if a["generator"] == g) for g in ("active_reading", "focal_rewrite")}
    synth.write_manifest(
        ctx,
        model_dir=ctx.input("model"),
        sampling={"strategies": strategy_sampling, "documents": doc_sampling},
        prompt_names=[STRATEGIES, APPLY, FOCAL],
        stats=backend.stats,
        rejected=rejected,
        started=started,
        counts={
            "requested": len(strategy_requests) + len(requests),
            "accepted": len(accepted),
            "rejected": len(rejected),
            "strategy_fallbacks": fallbacks,
            **by_generator,
        },
    )
    ctx.log.info("synth_docs: %s accepted, %d rejected", by_generator, len(rejected))
