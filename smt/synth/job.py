"""What a generator is given for one shard of one stage instance: plain values and a completion function, so
the generators know nothing of shards, journals or the pipeline."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from smt.synth.generation import Completion, Request, Sampling


@dataclass
class Job:
    """What a generator is given for one shard: plain values, and a function that completes requests."""

    documents: list[dict[str, Any]]
    seed: int
    options: dict[str, Any]  # the generator's own options from params
    temperature: float
    top_p: float
    max_new_tokens: int
    questions: str | None = None  # the generated QAs (Focal Rewriting asks about them)
    target_per_document: int = 0  # tokens of accepted items each document should hold (0: one round only)
    max_rounds: int = 1  # rounds of generation per document at most (smt.synth.rounds)
    complete: Callable[[list[Request], Sampling, str], list[Completion]] = field(default=lambda r, s, step: [])

    def sampling(self, max_new_tokens: int | None = None) -> Sampling:
        return Sampling(self.temperature, self.top_p, max_new_tokens or self.max_new_tokens)
