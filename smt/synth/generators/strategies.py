"""Active Reading's first step, shared by Active Reading and Focal Rewriting: learning strategies specific to a
document, as markdown headings. Both generators ask with the same prompt, seed and sampling, so they get the
same strategies for a document."""

from __future__ import annotations

import re
from typing import Any

from smt import prompts
from smt.synth import collect
from smt.synth.generation import Request, Sampling, item_seed
from smt.synth.job import Job

PROMPT = "active_reading_strategies"
PREFILL = "## "
# Used only when the generator lists no parseable strategy for a document; counted in the manifest.
FALLBACK_STRATEGIES = (
    "Summarize the document paragraph by paragraph, keeping every name, number and date.",
    "Write questions a teacher would ask about the document, each followed by its answer.",
)


def parse_strategies(text: str) -> list[str]:
    """Split a markdown list of strategies on '##' headings."""
    parts = [re.sub(r"\s+", " ", p).strip(" #*-:") for p in re.split(r"(?m)^\s*##+", text)]
    return [p for p in parts if len(p.split()) >= 3]


def learn(
    job: Job, collector: collect.Collector, docs: list[dict[str, Any]], max_new_tokens: int
) -> tuple[dict[str, list[str]], Sampling]:
    """Strategies per document id; a document without a parseable one gets the fallbacks (a counted step
    rejection)."""
    sampling = job.sampling(max_new_tokens)
    template = prompts.load(PROMPT)
    requests = [
        Request(
            f"{d['doc_id']}/strategies",
            [{"role": "user", "content": template.format(document=collect.document_text(d))}],
            item_seed(job.seed, d["doc_id"], PROMPT, 0),
            prefill=PREFILL,
        )
        for d in docs
    ]
    found: dict[str, list[str]] = {}
    for doc, completion in zip(docs, job.complete(requests, sampling, "strategies"), strict=True):
        parsed = parse_strategies(completion.text) if not completion.error else []
        if not parsed:
            reason = collect.failure(completion, PREFILL) or (
                "truncated at max_new_tokens" if completion.finish_reason == "length" else "no parseable strategy"
            )
            collector.step_reject(completion.key, doc["doc_id"], reason, completion.text)
            collector.counts["strategy_fallbacks"] += 1
            parsed = list(FALLBACK_STRATEGIES)
        found[doc["doc_id"]] = parsed
    return found, sampling
