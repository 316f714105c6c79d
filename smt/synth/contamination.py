"""Contamination of synthetic text with a benchmark's test items, by word n-gram overlap.

For each benchmark question, its n-grams are those of the question text and of each answer option, less every
n-gram that also occurs in the benchmark's documents (those a generator may legitimately copy from its source).
A synthetic text's overlap with a question is the share of the question's n-grams it contains; its
contamination is the largest overlap over all questions. A question with no n-gram left (shorter than n words,
or quoted from a document) cannot be checked and is counted as such.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from smt.synth import records

_WORD = re.compile(r"[a-z0-9]+")


def words(text: str) -> list[str]:
    return _WORD.findall(text.lower())


def ngrams(tokens: list[str], n: int) -> set[tuple[str, ...]]:
    return {tuple(tokens[i : i + n]) for i in range(len(tokens) - n + 1)}


@dataclass(frozen=True)
class Hit:
    overlap: float
    question_id: str | None


class Index:
    """The checkable n-grams of every benchmark question, inverted for lookup."""

    def __init__(self, questions: Iterable[dict[str, Any]], documents: Iterable[str], n: int) -> None:
        self.n = n
        from_documents: set[tuple[str, ...]] = set()
        for doc in documents:
            from_documents |= ngrams(words(doc), n)
        self.sizes: dict[str, int] = {}
        self.index: dict[tuple[str, ...], list[str]] = {}
        self.unchecked = 0
        for q in questions:
            grams = ngrams(words(q["question"]), n)
            for option in q.get("options") or []:
                grams |= ngrams(words(option), n)
            grams -= from_documents
            if not grams:
                self.unchecked += 1
                continue
            self.sizes[q["question_id"]] = len(grams)
            for gram in grams:
                self.index.setdefault(gram, []).append(q["question_id"])

    def check(self, text: str) -> Hit:
        """The question this text overlaps most (ties: the smallest id) and the share of its n-grams found."""
        hits: Counter[str] = Counter()
        for gram in ngrams(words(text), self.n):
            hits.update(self.index.get(gram, ()))
        if not hits:
            return Hit(0.0, None)
        qid, overlap = min(((q, h / self.sizes[q]) for q, h in hits.items()), key=lambda x: (-x[1], x[0]))
        return Hit(overlap, qid)


def load_index(questions: str, documents: str, n: int) -> Index:
    """The index of a benchmark's questions, from its normalized tables."""
    import polars as pl

    return Index(pl.read_parquet(questions).to_dicts(), pl.read_parquet(documents)["text"].to_list(), n)


TOP = 10


class ContaminationError(RuntimeError):
    """Synthetic text reproduces benchmark test items beyond the allowed overlap."""


def audit(
    streams: dict[str, list[dict[str, Any]]], index: Index, limit: float
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The contamination report of these streams (largest and mean overlap, per stream) and the most
    overlapping items; raises ContaminationError naming the worst item and its question when any item's
    overlap exceeds `limit`."""
    checked: list[dict[str, Any]] = []
    per_stream: dict[str, dict[str, float]] = {}
    for name, items in streams.items():
        hits = [(item, index.check(records.text(item))) for item in items]
        overlaps = [hit.overlap for _, hit in hits]
        per_stream[name] = {
            "items": len(items),
            "max": round(max(overlaps, default=0.0), 4),
            "mean": round(sum(overlaps) / len(overlaps), 4) if overlaps else 0.0,
        }
        checked += [
            {"id": item["id"], "stream": name, "question_id": hit.question_id, "overlap": round(hit.overlap, 4)}
            for item, hit in hits
        ]
    worst = sorted(checked, key=lambda c: (-c["overlap"], c["id"]))[:TOP]
    over = [c for c in checked if c["overlap"] > limit]
    overlaps = [c["overlap"] for c in checked]
    report = {
        "ngram": index.n,
        "threshold": limit,
        "max": max(overlaps, default=0.0),
        "mean": round(sum(overlaps) / len(overlaps), 4) if overlaps else 0.0,
        "items": len(checked),
        "items_over_threshold": len(over),
        "questions_checked": len(index.sizes),
        "questions_unchecked": index.unchecked,
        "streams": per_stream,
    }
    if over:
        top = worst[0]
        raise ContaminationError(
            f"synthetic item {top['id']} ({top['stream']}) contains {top['overlap']:.0%} of the {index.n}-grams of "
            f"benchmark question {top['question_id']}, above audit.max_contamination = {limit}; {len(over)} of "
            f"{len(checked)} items are above it"
        )
    return report, worst
