"""How often retrieval finds what a question needs: the gold document, and the gold evidence where the benchmark
locates it (FinanceBench evidence pages, LongHealth answer texts)."""

from __future__ import annotations

from typing import Any


def evidence_spans(question: dict[str, Any], docs: dict[str, dict[str, Any]]) -> list[tuple[str, int, int]]:
    """(doc_id, start, end) of every evidence segment of a question that is in the corpus."""
    spans = []
    for ev in question["evidence"] or []:
        doc = docs.get(ev["doc_id"])
        for seg in (doc or {}).get("segments") or []:
            if seg["name"] == ev["segment"]:
                spans.append((ev["doc_id"], seg["start"], seg["end"]))
    return spans


def hits_evidence(hits: list[dict[str, Any]], spans: list[tuple[str, int, int]]) -> bool:
    """Whether a hit overlaps an evidence span of its document."""
    return any(
        h["doc_id"] == doc and h["char_start"] < end and start < h["char_end"]
        for h in hits
        for doc, start, end in spans
    )


def recall(records: list[dict[str, Any]]) -> dict[str, Any]:
    """Share of questions whose kept chunks include the gold document, and the gold evidence where known."""
    with_doc = [r for r in records if r["gold_document_in_corpus"]]
    with_evidence = [r for r in records if r["evidence_segments"]]
    return {
        "questions": len(records),
        "document_recall": sum(r["found_document"] for r in with_doc) / len(with_doc) if with_doc else None,
        "questions_with_document": len(with_doc),
        "evidence_recall": sum(r["found_evidence"] for r in with_evidence) / len(with_evidence)
        if with_evidence
        else None,
        "questions_with_evidence": len(with_evidence),
    }
