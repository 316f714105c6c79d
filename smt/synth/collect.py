"""What every generator shares: documents as text, the backend it ran on, and the bookkeeping of accepted and
rejected items (no item is ever dropped silently)."""

from __future__ import annotations

import importlib.metadata
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from smt.synth.generation import BackendSettings, Completion, Sampling


def document_text(doc: dict[str, Any]) -> str:
    """The document as the generator sees it: title, author and year (when known), then the text."""
    author = f"by {doc['author']}" if doc.get("author") else ""
    year = f"({doc['year']})" if doc.get("year") else ""
    byline = " ".join(p for p in (author, year) if p)
    head = doc.get("title") or doc["doc_id"]
    return f"{head}\n{byline}\n\n{doc['text']}" if byline else f"{head}\n\n{doc['text']}"


def backend_info(settings: BackendSettings) -> dict[str, Any]:
    """What generates, known without starting it (a resumed shard may never start the backend)."""
    info: dict[str, Any] = {"name": settings.backend}
    if settings.backend == "http":
        info.update(base_url=settings.http.get("base_url"), model=settings.http.get("model"))
    else:
        package = "transformers" if settings.backend == "transformers" else "vllm"
        try:
            info["version"] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            info["version"] = None
    return info


@dataclass
class Outcome:
    """What one shard of one generator produced."""

    records: list[dict[str, Any]]
    rejected: list[dict[str, Any]]
    step_rejected: list[dict[str, Any]]
    requested: int
    counts: dict[str, int]
    sampling: dict[str, Sampling]
    prompts: list[str]


@dataclass
class Collector:
    """Planned items end accepted or rejected with a reason; intermediate steps (strategies, entities) record
    their own rejections. `outcome` checks that nothing planned went missing."""

    generator: str
    records: list[dict[str, Any]] = field(default_factory=list)
    rejected: list[dict[str, Any]] = field(default_factory=list)
    step_rejected: list[dict[str, Any]] = field(default_factory=list)
    requested: int = 0
    counts: Counter[str] = field(default_factory=Counter)
    _seen: set[tuple[str, str]] = field(default_factory=set)

    def plan(self, n: int = 1) -> None:
        self.requested += n

    def accept(self, completion: Completion, doc_id: str, unique: str, key: str | None = None, **fields: Any) -> bool:
        """Keep a record (its id: `key`, else the completion's) unless its `unique` text repeats one of the same
        document ('duplicate')."""
        marker = (doc_id, " ".join(unique.lower().split()))
        if marker in self._seen:
            self.reject(key or completion.key, doc_id, "duplicate", completion.text)
            return False
        self._seen.add(marker)
        self.records.append(
            {
                "id": key or completion.key,
                "doc_id": doc_id,
                "generator": self.generator,
                **fields,
                "finish_reason": completion.finish_reason,
                "completion_tokens": completion.completion_tokens,
            }
        )
        return True

    def reject(self, key: str, doc_id: str, reason: str, text: str = "") -> None:
        self.rejected.append({"id": key, "doc_id": doc_id, "reason": reason, "text": text[:500]})

    def step_reject(self, key: str, doc_id: str, reason: str, text: str = "") -> None:
        self.step_rejected.append({"id": key, "doc_id": doc_id, "reason": reason, "text": text[:500]})

    def outcome(self, sampling: dict[str, Sampling], prompt_names: list[str]) -> Outcome:
        if self.requested != len(self.records) + len(self.rejected):
            raise RuntimeError(
                f"{self.generator}: {self.requested} items planned but {len(self.records)} accepted and "
                f"{len(self.rejected)} rejected: an item went missing"
            )
        return Outcome(
            self.records, self.rejected, self.step_rejected, self.requested, dict(self.counts), sampling, prompt_names
        )


def failure(completion: Completion, prefill: str = "") -> str | None:
    """Reasons that reject any completion before a generator reads it: an endpoint error, or no text."""
    if completion.error:
        return completion.error
    if not completion.text[len(prefill) :].strip():
        return "truncated at max_new_tokens" if completion.finish_reason == "length" else "empty"
    return None


def generation_summary(counts: dict[str, Any]) -> dict[str, Any]:
    """Tokens of every completion the records come from (`prompt_tokens`, `completion_tokens`: what the output
    cost), and this run's own generation: `generated` completions, `generated_tokens`, backend `seconds` and
    `completion_tokens_per_s` (`resumed` completions came from an earlier, interrupted run)."""
    seconds = counts["seconds"]
    return {
        **counts,
        "seconds": round(seconds, 2),
        "completion_tokens_per_s": round(counts["generated_tokens"] / seconds, 2) if seconds else 0.0,
    }
