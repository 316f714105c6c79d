"""FinanceBench (Islam et al. 2023): open-source questions, document metadata and the source PDFs.

Each filing becomes one document: its PDF converted page by page (smt.benchmarks.pdf), every page a named
segment `page_<n>` (0-indexed, as the benchmark's `evidence_page_num`), so evidence pages can be checked in
the converted text and against retrieved chunks. Answers are free-form. A question whose PDF is absent keeps
its row with status `missing_document`: it is reported by id and never silently dropped from a score.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from smt.benchmarks import pdf
from smt.benchmarks import tables as T

QUESTIONS_FILE = "financebench_open_source.jsonl"
DOCUMENTS_FILE = "financebench_document_information.jsonl"
PDF_DIR = "pdfs"
PAGE_SEPARATOR = "\n\n"
DOC_TYPES = {
    "10k": "10-K",
    "10q": "10-Q",
    "8k": "8-K",
    "earnings": "earnings report",
    "10k_annualreport": "annual report",
}


def _json_lines(path: Path, what: str) -> list[tuple[str, dict[str, Any]]]:
    if not path.exists():
        raise FileNotFoundError(f"{path}: not found (FinanceBench source folder {path.parent})")
    return [(f"line {lineno}", row) for lineno, row in T.require_rows(T.json_lines(path), path, what)]


def read_metadata(path: Path) -> tuple[dict[str, dict[str, Any]], list[str]]:
    """Document rows by name, and the names given more than once (upstream lists FOOTLOCKER_2023_annualreport
    twice, with two periods; the first row is kept)."""
    metadata: dict[str, dict[str, Any]] = {}
    duplicates = []
    for label, row in _json_lines(path, "documents"):
        name = T.require(row, "doc_name", str, path, label)
        T.require(row, "company", str, path, label)
        T.require(row, "doc_type", str, path, label)
        T.require(row, "doc_period", int, path, label)
        if name in metadata:
            duplicates.append(name)
        else:
            metadata[name] = row
    return metadata, duplicates


def _evidence(q: dict[str, Any], path: Path, label: str) -> list[dict[str, Any]]:
    evidence = []
    for k, ev in enumerate(T.require(q, "evidence", list, path, label), 1):
        where = f"{label} evidence {k}"
        page = T.require(ev, "evidence_page_num", int, path, where)
        if page < 0:
            raise T.BenchmarkInputError(path, where, "evidence_page_num", f"{page} is negative")
        doc = T.require(ev, "doc_name", str, path, where)
        text = T.require(ev, "evidence_text", str, path, where)
        evidence.append({"doc_id": doc, "segment": f"page_{page}", "text": text})
    return evidence


def read_questions(path: Path, metadata: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    questions = []
    for label, row in _json_lines(path, "questions"):
        doc = T.require(row, "doc_name", str, path, label)
        if doc not in metadata:
            raise T.BenchmarkInputError(path, label, "doc_name", f"{doc!r} has no row in {DOCUMENTS_FILE}")
        questions.append(
            T.free_form(
                T.require(row, "financebench_id", (str, int), path, label).__str__(),
                doc,
                T.require(row, "question", str, path, label),
                T.require(row, "answer", str, path, label),
                split=row.get("dataset_subset_label") or "open_source",
                category=row.get("question_type"),
                evidence=_evidence(row, path, label),
            )
        )
    T.check_unique(questions, "question_id", path)
    return questions


def filing_document(name: str, meta: dict[str, Any], pages: list[str]) -> dict[str, Any]:
    segments, offset = [], 0
    for i, page in enumerate(pages):
        segments.append({"name": f"page_{i}", "start": offset, "end": offset + len(page)})
        offset += len(page) + len(PAGE_SEPARATOR)
    kind = DOC_TYPES.get(meta["doc_type"].lower(), meta["doc_type"])
    return T.document(
        name,
        PAGE_SEPARATOR.join(pages),
        title=f"{meta['company']} {meta['doc_period']} {kind}",
        year=meta["doc_period"],
        origin=meta.get("doc_link"),
        segments=segments,
    )


def load(source: Path, options: dict[str, Any], workers: int = 1) -> T.Loaded:
    metadata, duplicates = read_metadata(source / DOCUMENTS_FILE)
    questions = read_questions(source / QUESTIONS_FILE, metadata)
    referenced = {q["doc_id"] for q in questions}
    available = {p.stem: p for p in sorted((source / PDF_DIR).glob("*.pdf"))} if (source / PDF_DIR).is_dir() else {}
    loaded = T.Loaded([], questions)
    no_metadata = sorted(set(available) - set(metadata))
    if no_metadata:
        loaded.exclude("pdf_without_metadata", len(no_metadata))
    wanted = sorted(set(available) & (set(metadata) if options["corpus"] == "all" else referenced))
    texts = pdf.convert_all([available[name] for name in wanted], workers)
    for name in wanted:
        loaded.documents.append(filing_document(name, metadata[name], texts[available[name]]))
    pages = {d["doc_id"]: len(d["segments"]) for d in loaded.documents}
    missing: dict[str, list[str]] = {}
    out_of_range = []
    for q in questions:
        if q["doc_id"] not in pages:
            q["status"] = T.MISSING_DOCUMENT
            missing.setdefault(q["doc_id"], []).append(q["question_id"])
        for ev in q["evidence"]:
            if ev["doc_id"] in pages and int(ev["segment"].removeprefix("page_")) >= pages[ev["doc_id"]]:
                out_of_range.append(q["question_id"])
    loaded.exclude("questions_missing_document", sum(len(v) for v in missing.values()))
    loaded.notes = {
        "format": "FinanceBench open-source JSONL + document information + PDFs",
        "pdf_library": pdf.library(),
        "corpus": options["corpus"],
        "missing_documents": {doc: ids for doc, ids in sorted(missing.items())},
        "evidence_page_out_of_range": sorted(set(out_of_range)),
        "pdfs_without_metadata": no_metadata,
        "duplicate_metadata_rows": duplicates,
        "pages": sum(pages.values()),
    }
    return loaded
