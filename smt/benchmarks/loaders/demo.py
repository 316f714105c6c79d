"""The demo benchmark shipped with smt: fictional articles and four-option questions, as JSON lines."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from smt.benchmarks import tables as T


def load(source: Path, options: dict[str, Any], workers: int = 1) -> T.Loaded:
    docs_path, questions_path = source / "documents.jsonl", source / "questions.jsonl"
    documents = []
    for i, (_, raw) in enumerate(T.require_rows(T.json_lines(docs_path), docs_path, "documents"), 1):
        documents.append(
            T.document(
                doc_id=T.require(raw, "doc_id", str, docs_path, i),
                text=T.require(raw, "text", str, docs_path, i),
                title=T.require(raw, "title", str, docs_path, i),
                author=T.require(raw, "author", str, docs_path, i),
                year=T.require(raw, "year", int, docs_path, i),
                origin="smt demo (fictional)",
            )
        )
    T.check_unique(documents, "doc_id", docs_path)
    doc_ids = {d["doc_id"] for d in documents}
    questions = []
    for i, (_, raw) in enumerate(T.require_rows(T.json_lines(questions_path), questions_path, "questions"), 1):
        opts = T.require(raw, "options", list, questions_path, i)
        if len(opts) < 2 or not all(isinstance(o, str) and o.strip() for o in opts):
            raise T.BenchmarkInputError(questions_path, i, "options", "must hold at least two non-empty strings")
        answer = T.require(raw, "answer", str, questions_path, i)
        if answer not in T.letters(len(opts)):
            raise T.BenchmarkInputError(
                questions_path, i, "answer", f"{answer!r} is not one of {list(T.letters(len(opts)))}"
            )
        doc_id = T.require(raw, "doc_id", str, questions_path, i)
        if doc_id not in doc_ids:
            raise T.BenchmarkInputError(questions_path, i, "doc_id", f"{doc_id!r} names no document")
        questions.append(
            T.multiple_choice(
                question_id=T.require(raw, "question_id", str, questions_path, i),
                doc_id=doc_id,
                question=T.require(raw, "question", str, questions_path, i),
                options=opts,
                answer_index=T.letters(len(opts)).index(answer),
                split="test",
            )
        )
    T.check_unique(questions, "question_id", questions_path)
    return T.Loaded(documents, questions)
