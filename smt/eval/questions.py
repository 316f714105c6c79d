"""The tables an evaluation reads: a benchmark's questions and documents, and the retrieved excerpts."""

from __future__ import annotations

import re
from typing import Any

import polars as pl

from smt import io


def natural_key(question_id: str) -> list[Any]:
    """Sort key reading the numbers inside an id as numbers: demo-01-q2 before demo-01-q10."""
    return [(0, int(part), "") if part.isdigit() else (1, 0, part) for part in re.split(r"(\d+)", question_id)]


def load_questions(path: str, limit: int) -> list[dict[str, Any]]:
    """Questions in the natural order of their ids (q2 before q10); limit > 0 keeps the first `limit`, so
    `eval.max_questions: 10` is a document's questions 1 to 10. A benchmark is all multiple choice or all
    free-form: one scorer reads all of its questions."""
    table = pl.read_parquet(path)
    kinds = sorted(set(table["kind"]))
    if len(kinds) != 1:
        raise ValueError(f"{path}: questions of several kinds {kinds}; one benchmark must have one kind")
    if table.is_empty():
        raise ValueError(f"{path}: no questions to evaluate")
    questions = sorted(table.to_dicts(), key=lambda q: natural_key(q["question_id"]))
    return questions[:limit] if limit else questions


def load_documents(path: str) -> dict[str, dict[str, Any]]:
    return {d["doc_id"]: d for d in pl.read_parquet(path).to_dicts()}


def load_hits(path: str) -> dict[str, list[dict[str, Any]]]:
    return {r["question_id"]: r["hits"] for r in io.read_jsonl(path)}
