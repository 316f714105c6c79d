"""The questions an evaluation reads: `eval.max_questions` keeps the first questions in the ids' natural order."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest

from smt.eval.questions import load_questions


def write(path: Path, ids: list[str], kinds: list[str] | None = None) -> str:
    pl.DataFrame({"question_id": ids, "kind": kinds or ["multiple_choice"] * len(ids)}).write_parquet(path)
    return str(path)


def test_the_first_questions_are_counted_as_numbers(tmp_path: Path) -> None:
    ids = [f"demo-0{d}-q{n}" for d in (2, 1) for n in range(16, 0, -1)]
    path = write(tmp_path / "q.parquet", ids)
    assert [q["question_id"] for q in load_questions(path, 10)] == [f"demo-01-q{n}" for n in range(1, 11)]
    every = [q["question_id"] for q in load_questions(path, 0)]
    assert every == [f"demo-0{d}-q{n}" for d in (1, 2) for n in range(1, 17)]


def test_one_benchmark_has_one_kind_of_question(tmp_path: Path) -> None:
    path = write(tmp_path / "q.parquet", ["a-1", "a-2"], ["multiple_choice", "free_form"])
    with pytest.raises(ValueError, match="questions of several kinds"):
        load_questions(path, 0)
