"""Active Reading's first step, shared by Active Reading and Focal Rewriting: learning strategies specific to a
document, as markdown headings.

A document's items use a fresh list of strategies for every `strategies_every` of them (list k for items
k*every .. (k+1)*every - 1, asked with its own seed), so no strategy is reused without bound however many items
a budget needs; the manifest counts the lists and the largest number of uses of one strategy. Both generators
ask with the same prompt, seeds and sampling, so they get the same lists for a document.
"""

from __future__ import annotations

import re
from collections import Counter
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


class Strategies:
    """The strategy lists of a shard's documents, asked for as items need them."""

    def __init__(self, job: Job, collector: collect.Collector) -> None:
        self.job = job
        self.collector = collector
        self.every = job.options["strategies_every"]
        self.sampling: Sampling = job.sampling(job.options["strategies_max_new_tokens"])
        self.lists: dict[tuple[str, int], list[str]] = {}
        self.uses: Counter[tuple[str, str]] = Counter()

    def prepare(self, plan: list[tuple[dict[str, Any], int, int]]) -> None:
        """Ask, in one batch, for every list that a round's items need: (doc, start, count) each."""
        template = prompts.load(PROMPT)
        wanted = [
            (d, k)
            for d, start, count in plan
            for k in range(start // self.every, (start + count - 1) // self.every + 1)
            if (d["doc_id"], k) not in self.lists
        ]
        requests = [
            Request(
                f"{d['doc_id']}/strategies/{k}",
                [{"role": "user", "content": template.format(document=collect.document_text(d))}],
                item_seed(self.job.seed, d["doc_id"], PROMPT, k),
                prefill=PREFILL,
            )
            for d, k in wanted
        ]
        for (doc, k), completion in zip(wanted, self.job.complete(requests, self.sampling, "strategies"), strict=True):
            parsed = parse_strategies(completion.text) if not completion.error else []
            if not parsed:
                reason = collect.failure(completion, PREFILL) or (
                    "truncated at max_new_tokens" if completion.finish_reason == "length" else "no parseable strategy"
                )
                self.collector.step_reject(completion.key, doc["doc_id"], reason, completion.text)
                self.collector.counts["strategy_fallbacks"] += 1
                parsed = list(FALLBACK_STRATEGIES)
            self.lists[(doc["doc_id"], k)] = parsed
        self.collector.counts["strategy_lists"] = len(self.lists)

    def for_item(self, doc_id: str, index: int) -> list[str]:
        """The list that item `index` of a document draws from."""
        return self.lists[(doc_id, index // self.every)]

    def use(self, doc_id: str, strategy: str) -> None:
        self.uses[(doc_id, strategy)] += 1
        self.collector.counts["max_strategy_reuse"] = max(self.uses.values())
