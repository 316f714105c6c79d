"""Ingest a benchmark into normalized tables: documents and questions with stable ids."""

from __future__ import annotations

import string
from typing import Any

import polars as pl

from smt import io
from smt.context import StageContext

DOCUMENT_FIELDS = {"doc_id": str, "title": str, "author": str, "year": int, "text": str}
QUESTION_FIELDS = {"question_id": str, "doc_id": str, "question": str, "options": list, "answer": str}
DOCUMENT_SCHEMA = {
    "doc_id": pl.String,
    "title": pl.String,
    "author": pl.String,
    "year": pl.Int64,
    "text": pl.String,
    "n_words": pl.Int64,
}
QUESTION_SCHEMA = {
    "question_id": pl.String,
    "doc_id": pl.String,
    "question": pl.String,
    "options": pl.List(pl.String),
    "answer": pl.String,
    "answer_index": pl.Int64,
}


def _check(record: dict[str, Any], fields: dict[str, type], path: str, lineno: int) -> None:
    for name, kind in fields.items():
        if name not in record:
            raise ValueError(f"{path}: record {lineno}: missing field '{name}'")
        if not isinstance(record[name], kind) or (kind is str and not record[name].strip()):
            raise ValueError(f"{path}: record {lineno}: field '{name}' must be a non-empty {kind.__name__}")


def load_documents(path: str) -> list[dict[str, Any]]:
    docs = io.read_jsonl(path)
    seen: set[str] = set()
    for i, doc in enumerate(docs, 1):
        _check(doc, DOCUMENT_FIELDS, path, i)
        if doc["doc_id"] in seen:
            raise ValueError(f"{path}: record {i}: duplicate doc_id '{doc['doc_id']}'")
        seen.add(doc["doc_id"])
    return docs


def load_questions(path: str, doc_ids: set[str]) -> list[dict[str, Any]]:
    questions = io.read_jsonl(path)
    seen: set[str] = set()
    for i, q in enumerate(questions, 1):
        _check(q, QUESTION_FIELDS, path, i)
        letters = string.ascii_uppercase[: len(q["options"])]
        if len(q["options"]) < 2 or not all(isinstance(o, str) and o.strip() for o in q["options"]):
            raise ValueError(f"{path}: record {i}: field 'options' must hold at least two non-empty strings")
        if q["answer"] not in letters:
            raise ValueError(f"{path}: record {i}: field 'answer' = {q['answer']!r} is not one of {list(letters)}")
        if q["doc_id"] not in doc_ids:
            raise ValueError(f"{path}: record {i}: field 'doc_id' = {q['doc_id']!r} names no document")
        if q["question_id"] in seen:
            raise ValueError(f"{path}: record {i}: duplicate question_id '{q['question_id']}'")
        seen.add(q["question_id"])
        q["answer_index"] = letters.index(q["answer"])
    return questions


def run(ctx: StageContext) -> None:
    docs = load_documents(ctx.input("raw_documents"))
    questions = load_questions(ctx.input("raw_questions"), {d["doc_id"] for d in docs})
    limit = ctx.p("ingest.max_documents")
    kept_docs = sorted(docs, key=lambda d: d["doc_id"])[: limit or None]
    kept_ids = {d["doc_id"] for d in kept_docs}
    kept_questions = [q for q in questions if q["doc_id"] in kept_ids]
    for d in kept_docs:
        d["n_words"] = len(d["text"].split())
    doc_table = pl.DataFrame([{k: d[k] for k in DOCUMENT_SCHEMA} for d in kept_docs], schema=DOCUMENT_SCHEMA)
    q_table = pl.DataFrame([{k: q[k] for k in QUESTION_SCHEMA} for q in kept_questions], schema=QUESTION_SCHEMA)
    for name, table in (("documents", doc_table), ("questions", q_table)):
        with io.atomic_path(ctx.outputs[name]) as tmp:
            table.write_parquet(tmp)
    words = doc_table["n_words"]
    io.write_json(
        ctx.outputs["report"],
        {
            "documents": doc_table.height,
            "questions": q_table.height,
            "words_per_document_mean": float(words.mean() or 0),
            "words_per_document_max": int(words.max() or 0),
            "excluded_documents": len(docs) - len(kept_docs),
            "excluded_questions": len(questions) - len(kept_questions),
        },
    )
    ctx.log.info("ingested %d documents, %d questions", doc_table.height, q_table.height)
