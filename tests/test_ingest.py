"""Ingest: the demo benchmark loads; malformed records stop with file, record and field, writing nothing."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from smt.stages import ingest

DEMO = Path(__file__).resolve().parents[1] / "smt" / "benchmarks" / "demo"


def test_demo_benchmark_is_complete() -> None:
    docs = ingest.load_documents(str(DEMO / "documents.jsonl"))
    questions = ingest.load_questions(str(DEMO / "questions.jsonl"), {d["doc_id"] for d in docs})
    assert len(docs) >= 3 and len(questions) >= 30
    assert all(len(q["options"]) == 4 for q in questions)
    assert {q["answer"] for q in questions} == {"A", "B", "C", "D"}


def write(tmp_path: Path, rows: list[dict]) -> str:
    path = tmp_path / "questions.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(path)


GOOD = {"question_id": "q1", "doc_id": "d1", "question": "Why?", "options": ["a", "b", "c", "d"], "answer": "B"}


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"answer": "E"}, r"record 2: field 'answer' = 'E' is not one of \['A', 'B', 'C', 'D'\]"),
        ({"doc_id": "nope"}, r"record 2: field 'doc_id' = 'nope' names no document"),
        ({"question": ""}, r"record 2: field 'question' must be a non-empty str"),
        ({"question_id": "q1"}, r"record 2: duplicate question_id 'q1'"),
    ],
)
def test_bad_question_is_named(tmp_path: Path, change: dict, message: str) -> None:
    path = write(tmp_path, [GOOD, {**GOOD, "question_id": "q2", **change}])
    with pytest.raises(ValueError, match=rf"{path}: {message}"):
        ingest.load_questions(path, {"d1"})


def test_missing_field(tmp_path: Path) -> None:
    row = {k: v for k, v in GOOD.items() if k != "options"}
    path = write(tmp_path, [row])
    with pytest.raises(ValueError, match=rf"{path}: record 1: missing field 'options'"):
        ingest.load_questions(path, {"d1"})


def test_truncated_json_names_the_line(tmp_path: Path) -> None:
    path = tmp_path / "documents.jsonl"
    path.write_text('{"doc_id": "d1", "title": "T", "author": "A", "year": 2000, "text": "x"}\n{"doc_id": "d2", "ti')
    with pytest.raises(ValueError, match=rf"{path}: line 2: not valid JSON"):
        ingest.load_documents(str(path))
