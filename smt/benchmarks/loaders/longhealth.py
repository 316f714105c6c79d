"""LongHealth (Adams et al. 2024) from `benchmark_v5.json`: 20 fictional patients, 400 five-option questions.

Each patient becomes one document: their clinical texts joined in order, each text a named segment
(`text_0`, ...), so the answer locations the benchmark gives can be checked against retrieved chunks. The
correct option is published as text; it is mapped to its letter and must match exactly one option.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from smt.benchmarks import tables as T

FILE = "benchmark_v5.json"
OPTION_FIELDS = ("answer_a", "answer_b", "answer_c", "answer_d", "answer_e")
TEXT_SEPARATOR = "\n\n"


def _read(path: Path) -> dict[str, Any]:
    if not path.exists():
        raise FileNotFoundError(f"{path}: not found (LongHealth source folder {path.parent})")
    try:
        data = json.loads(T.read_text(path))
    except json.JSONDecodeError as exc:
        raise T.BenchmarkInputError(path, "<file>", None, f"not valid JSON ({exc.msg} at line {exc.lineno})") from exc
    if not isinstance(data, dict) or not data:
        raise T.BenchmarkInputError(path, "<file>", None, "expected a non-empty JSON object of patients")
    return data


def patient_document(patient: str, record: dict[str, Any], path: Path) -> dict[str, Any]:
    texts = T.require(record, "texts", dict, path, patient)
    if not texts:
        raise T.BenchmarkInputError(path, patient, "texts", "is empty")
    parts, segments, offset = [], [], 0
    for name, text in texts.items():
        if not isinstance(text, str) or not text.strip():
            raise T.BenchmarkInputError(path, patient, f"texts.{name}", "must be a non-empty string")
        parts.append(text)
        segments.append({"name": name, "start": offset, "end": offset + len(text)})
        offset += len(text) + len(TEXT_SEPARATOR)
    name = T.require(record, "name", str, path, patient)
    diagnosis = T.require(record, "diagnosis", str, path, patient)
    birthday = T.require(record, "birthday", str, path, patient)
    return T.document(
        patient,
        TEXT_SEPARATOR.join(parts),
        title=f"Clinical records of {name} (born {birthday}; {diagnosis})",
        origin="LongHealth benchmark_v5",
        segments=segments,
    )


def patient_question(q: Any, patient: str, texts: dict[str, Any], path: Path, label: str) -> dict[str, Any]:
    number = T.require(q, "No", (int, str), path, label)
    question = T.require(q, "question", str, path, label)
    options = [T.require(q, f, str, path, label).strip() for f in OPTION_FIELDS]
    correct = T.require(q, "correct", str, path, label).strip()
    matches = [i for i, option in enumerate(options) if option == correct]
    if len(matches) != 1:
        found = "matches no option" if not matches else f"matches {len(matches)} options"
        raise T.BenchmarkInputError(path, label, "correct", f"{correct[:60]!r} {found} (answer_a..answer_e)")
    locations = q.get("answer_location") or {}
    if not isinstance(locations, dict):
        raise T.BenchmarkInputError(path, label, "answer_location", "expected an object keyed by text name")
    unknown = sorted(set(locations) - set(texts))
    if unknown:
        raise T.BenchmarkInputError(path, label, "answer_location", f"names no text of {patient}: {unknown}")
    evidence = [{"doc_id": patient, "segment": name, "text": None} for name in locations]
    return T.multiple_choice(
        f"{patient}_q{int(number):02d}" if str(number).isdigit() else f"{patient}_q{number}",
        patient, question, options, matches[0], "test", evidence=evidence,
    )  # fmt: skip


def load(source: Path, options: dict[str, Any], workers: int = 1) -> T.Loaded:
    path = source / FILE
    data = _read(path)
    loaded = T.Loaded([], [])
    for patient, record in data.items():
        loaded.documents.append(patient_document(patient, record, path))
        for k, q in enumerate(T.require(record, "questions", list, path, patient), 1):
            loaded.questions.append(patient_question(q, patient, record["texts"], path, f"{patient} question {k}"))
    T.check_unique(loaded.questions, "question_id", path)
    loaded.notes = {"format": "LongHealth benchmark_v5.json", "patients": len(data)}
    return loaded
