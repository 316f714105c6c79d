"""The normalized tables every benchmark loader produces, and the validation errors they raise.

Every benchmark, whatever its published format, becomes two tables with the same columns, so synthesis,
training, retrieval and evaluation never look at a benchmark's own format:

- documents: one row per document of the corpus (a QuALITY article, a LongHealth patient's clinical texts, a
  FinanceBench filing). `segments` names character ranges of the text (a filing's pages, a patient's texts)
  so evidence locations can be checked against retrieved chunks.
- questions: one row per question. Multiple-choice questions carry options and the gold letter; free-form
  questions carry the gold answer text. `status` says why a question cannot be scored (e.g. its document is
  missing); no question is ever dropped silently.
"""

from __future__ import annotations

import json
import string
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import polars as pl

MULTIPLE_CHOICE = "multiple_choice"
FREE_FORM = "free_form"
OK = "ok"
MISSING_DOCUMENT = "missing_document"

SEGMENT = pl.Struct({"name": pl.String, "start": pl.Int64, "end": pl.Int64})
EVIDENCE = pl.Struct({"doc_id": pl.String, "segment": pl.String, "text": pl.String})

DOCUMENT_SCHEMA: dict[str, pl.DataType] = {
    "doc_id": pl.String,
    "title": pl.String,
    "author": pl.String,
    "year": pl.Int64,
    "origin": pl.String,
    "text": pl.String,
    "n_words": pl.Int64,
    "segments": pl.List(SEGMENT),
}
QUESTION_SCHEMA: dict[str, pl.DataType] = {
    "question_id": pl.String,
    "doc_id": pl.String,
    "question": pl.String,
    "kind": pl.String,
    "options": pl.List(pl.String),
    "answer": pl.String,
    "answer_index": pl.Int64,
    "difficult": pl.Boolean,
    "category": pl.String,
    "split": pl.String,
    "status": pl.String,
    "evidence": pl.List(EVIDENCE),
}


class BenchmarkInputError(ValueError):
    """A benchmark file is malformed; the message names the file, the record and the field."""

    def __init__(self, path: object, record: object, field: str | None, problem: str) -> None:
        self.path, self.record, self.field, self.problem = path, record, field, problem
        where = f"{path}: record {record}" + (f": field '{field}'" if field else "")
        super().__init__(f"{where}: {problem}")

    def __reduce__(self) -> tuple[Any, ...]:
        """Rebuilt from its four parts, so the error crosses a process pool (PDFs convert in workers) intact."""
        return (type(self), (self.path, self.record, self.field, self.problem))


def _decoded(raw: bytes, path: Path, record: str) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        problem = f"not valid UTF-8 (byte 0x{raw[exc.start]:02x} at offset {exc.start})"
        raise BenchmarkInputError(path, record, None, problem) from None


def read_text(path: Path) -> str:
    """A whole UTF-8 file; bytes that are not UTF-8 are an error naming the file and the offset."""
    return _decoded(path.read_bytes(), path, "<file>")


def json_lines(path: Path) -> list[tuple[int, Any]]:
    """The JSON value of every non-blank line with its line number; a line that is not UTF-8 or not JSON is an
    error naming the file and the line."""
    rows = []
    for lineno, raw in enumerate(path.read_bytes().split(b"\n"), 1):
        line = _decoded(raw, path, f"line {lineno}")
        if line.strip():
            try:
                rows.append((lineno, json.loads(line)))
            except json.JSONDecodeError as exc:
                raise BenchmarkInputError(path, f"line {lineno}", None, f"not valid JSON ({exc.msg})") from None
    return rows


def require_rows(rows: list[Any], path: Path, what: str) -> list[Any]:
    """A file that must hold at least one record (an empty file would ingest as an empty benchmark)."""
    if not rows:
        raise BenchmarkInputError(path, "<file>", None, f"holds no {what}")
    return rows


@dataclass
class Loaded:
    """What a loader returns: normalized rows plus what it left out, and why."""

    documents: list[dict[str, Any]]
    questions: list[dict[str, Any]]
    excluded: dict[str, int] = field(default_factory=dict)
    notes: dict[str, Any] = field(default_factory=dict)

    def exclude(self, reason: str, n: int = 1) -> None:
        if n:
            self.excluded[reason] = self.excluded.get(reason, 0) + n


def require(record: Any, name: str, kind: type | tuple[type, ...], path: object, label: object) -> Any:
    """A field of a record that must be present with this type (strings non-empty)."""
    if not isinstance(record, dict):
        raise BenchmarkInputError(path, label, None, f"expected a JSON object, got {type(record).__name__}")
    if name not in record:
        raise BenchmarkInputError(path, label, name, "missing")
    value = record[name]
    if isinstance(value, bool) and bool not in (kind if isinstance(kind, tuple) else (kind,)):
        raise BenchmarkInputError(path, label, name, f"expected {_names(kind)}, got {value!r}")
    if not isinstance(value, kind):
        raise BenchmarkInputError(path, label, name, f"expected {_names(kind)}, got {type(value).__name__}")
    if isinstance(value, str) and not value.strip():
        raise BenchmarkInputError(path, label, name, "is empty")
    return value


def _names(kind: type | tuple[type, ...]) -> str:
    kinds = kind if isinstance(kind, tuple) else (kind,)
    return " or ".join(k.__name__ for k in kinds)


def letters(n: int) -> str:
    return string.ascii_uppercase[:n]


def document(
    doc_id: str,
    text: str,
    title: str | None = None,
    author: str | None = None,
    year: int | None = None,
    origin: str | None = None,
    segments: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    return {
        "doc_id": doc_id,
        "title": title,
        "author": author,
        "year": year,
        "origin": origin,
        "text": text,
        "n_words": len(text.split()),
        "segments": segments or [],
    }


def multiple_choice(
    question_id: str,
    doc_id: str,
    question: str,
    options: list[str],
    answer_index: int,
    split: str,
    difficult: bool | None = None,
    category: str | None = None,
    evidence: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    return {
        "question_id": question_id,
        "doc_id": doc_id,
        "question": question,
        "kind": MULTIPLE_CHOICE,
        "options": options,
        "answer": letters(len(options))[answer_index],
        "answer_index": answer_index,
        "difficult": difficult,
        "category": category,
        "split": split,
        "status": OK,
        "evidence": evidence or [],
    }


def free_form(
    question_id: str,
    doc_id: str,
    question: str,
    answer: str,
    split: str,
    status: str = OK,
    category: str | None = None,
    evidence: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    return {
        "question_id": question_id,
        "doc_id": doc_id,
        "question": question,
        "kind": FREE_FORM,
        "options": [],
        "answer": answer,
        "answer_index": None,
        "difficult": None,
        "category": category,
        "split": split,
        "status": status,
        "evidence": evidence or [],
    }


def check_unique(rows: list[dict[str, Any]], key: str, path: object) -> None:
    seen: set[str] = set()
    for i, row in enumerate(rows, 1):
        if row[key] in seen:
            raise BenchmarkInputError(path, i, key, f"duplicate {key} {row[key]!r}")
        seen.add(row[key])


def to_frames(loaded: Loaded) -> tuple[pl.DataFrame, pl.DataFrame]:
    """The two tables, sorted by id (a stable order for every later stage)."""
    docs = pl.DataFrame(loaded.documents, schema=DOCUMENT_SCHEMA).sort("doc_id")
    questions = pl.DataFrame(loaded.questions, schema=QUESTION_SCHEMA).sort("question_id")
    return docs, questions
