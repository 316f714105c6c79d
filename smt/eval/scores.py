"""A score file's numbers: accuracy with its 95% bootstrap interval, n, correct, per-status accuracies where
some questions lack their document, and the counts of unparseable outputs and ties."""

from __future__ import annotations

from typing import Any

from smt.eval import stats


def accuracy_block(records: list[dict[str, Any]], resamples: int, seed: int) -> dict[str, Any]:
    outcomes = [bool(r["correct"]) for r in records]
    low, high = stats.bootstrap_ci(outcomes, resamples, seed)
    return {"accuracy": sum(outcomes) / len(outcomes), "ci_low": low, "ci_high": high, "n": len(outcomes)}


def summarize(records: list[dict[str, Any]], resamples: int, seed: int) -> dict[str, Any]:
    summary: dict[str, Any] = {
        **accuracy_block(records, resamples, seed),
        "correct": sum(bool(r["correct"]) for r in records),
    }
    statuses = sorted({r["status"] for r in records})
    if statuses != ["ok"]:
        summary["by_status"] = {
            s: accuracy_block([r for r in records if r["status"] == s], resamples, seed) for s in statuses
        }
    if "unparseable" in records[0]:
        summary["unparseable"] = sum(r["unparseable"] for r in records)
    if "tie" in records[0]:
        summary["ties"] = sum(r["tie"] for r in records)
    if "numeric_match" in records[0]:
        numeric = [r["numeric_match"] for r in records if r["numeric_match"] is not None]
        summary["numeric_match_accuracy"] = sum(numeric) / len(numeric) if numeric else None
        summary["numeric_questions"] = len(numeric)
    return summary
