"""The tables an evaluation reads: a benchmark's questions and documents, and the retrieved excerpts."""

from __future__ import annotations

from typing import Any

import polars as pl

from smt import io


def load_questions(path: str, limit: int) -> list[dict[str, Any]]:
    """Questions ordered by question_id; limit > 0 keeps the first `limit`. A benchmark is all multiple choice
    or all free-form: one scorer reads all of its questions."""
    table = pl.read_parquet(path).sort("question_id")
    kinds = sorted(set(table["kind"]))
    if len(kinds) != 1:
        raise ValueError(f"{path}: questions of several kinds {kinds}; one benchmark must have one kind")
    if table.is_empty():
        raise ValueError(f"{path}: no questions to evaluate")
    return table.head(limit).to_dicts() if limit else table.to_dicts()


def load_documents(path: str) -> dict[str, dict[str, Any]]:
    return {d["doc_id"]: d for d in pl.read_parquet(path).to_dicts()}


def load_hits(path: str) -> dict[str, list[dict[str, Any]]]:
    return {r["question_id"]: r["hits"] for r in io.read_jsonl(path)}
