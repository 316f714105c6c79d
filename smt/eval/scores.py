"""A score file's numbers: accuracy with its 95% bootstrap interval, n, correct, per-status accuracies where
some questions lack their document, the counts of unparseable outputs and ties, the accuracy over attempted
answers (generated answers: those with a parseable letter) and chance (multiple choice: the mean of 1/k)."""

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
    if "predicted" in records[0] and "unparseable" in records[0]:  # generated multiple-choice answers
        attempted = [r for r in records if not r["unparseable"]]
        summary["attempted"] = len(attempted)
        if attempted:
            block = accuracy_block(attempted, resamples, seed)
            summary["accuracy_attempted"] = block["accuracy"]
            summary["ci_attempted"] = [block["ci_low"], block["ci_high"]]
        else:
            summary["accuracy_attempted"] = None
    if "numeric_match" in records[0]:
        numeric = [r["numeric_match"] for r in records if r["numeric_match"] is not None]
        summary["numeric_match_accuracy"] = sum(numeric) / len(numeric) if numeric else None
        summary["numeric_questions"] = len(numeric)
    return summary
