"""QuALITY (Pang et al. 2022) from the official v1.0.1 htmlstripped release or from L-Eval's `quality.jsonl`.

Official format: one line per question set, so every article appears on two lines (two writers). Like
EntiGraph, train and dev are pooled and articles de-duplicated by (title, author): 265 articles and 4,609
questions in v1.0.1. The unlabelled test split is not read. EntiGraph's split sorts the articles by title and
keeps the first int(0.2 n) for validation and the rest for test.

L-Eval format: one line per article, without ids, titles or difficulty flags. Ids are derived from the article
text, so they do not depend on which lines a file holds. L-Eval added questions of its own (counting
sentences, the longest dialogue, ...) that are not QuALITY questions; they are excluded by default and counted.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path
from typing import Any

from smt.benchmarks import tables as T

OFFICIAL_FILES = {"train": "QuALITY.v1.0.1.htmlstripped.train", "dev": "QuALITY.v1.0.1.htmlstripped.dev"}
LEVAL_FILE = "quality.jsonl"
VALIDATION_SHARE = 0.2
_QUALITY_ORIGIN = re.compile(r"\n \(A\) ")
_OPTION = re.compile(r"\n ?\(([A-D])\) ?")
_GOLD = re.compile(r"^\s*\(([A-D])\)")
_COMMENT = re.compile(r"^\s*<!--.*?-->", re.DOTALL)
_BY = re.compile(r"^by\s+(.+)$", re.IGNORECASE)


def load(source: Path, options: dict[str, Any], workers: int = 1) -> T.Loaded:
    if options["format"] == "official":
        loaded = load_official(source)
    else:
        loaded = load_leval(source, options["include_leval_added"])
    return entigraph_split(loaded, options["split"])


def _json_lines(path: Path, what: str) -> list[tuple[int, Any]]:
    if not path.exists():
        raise FileNotFoundError(f"{path}: not found (QuALITY source folder {path.parent})")
    return T.require_rows(T.json_lines(path), path, what)


# ------------------------------------------------------------------------------------------------ official


def load_official(source: Path) -> T.Loaded:
    articles: dict[tuple[str, str], dict[str, Any]] = {}
    questions: list[dict[str, Any]] = []
    loaded = T.Loaded([], questions)
    lines = 0
    for split, name in OFFICIAL_FILES.items():
        path = source / name
        for lineno, record in _json_lines(path, "question sets"):
            lines += 1
            label = f"line {lineno}"
            title = T.require(record, "title", str, path, label)
            author = T.require(record, "author", str, path, label)
            article_id = str(T.require(record, "article_id", (str, int), path, label))
            set_id = T.require(record, "set_unique_id", str, path, label)
            text = T.require(record, "article", str, path, label)
            year = record.get("year")
            if year is not None and not isinstance(year, int):
                raise T.BenchmarkInputError(path, label, "year", f"expected int, got {year!r}")
            key = (title, author)
            if key not in articles:
                articles[key] = T.document(
                    article_id, text, title=title, author=author, year=year, origin=record.get("source")
                )
            elif articles[key]["text"] != text:
                loaded.exclude("article_text_variant_ignored")
            doc_id = articles[key]["doc_id"]
            for k, q in enumerate(T.require(record, "questions", list, path, label), 1):
                questions.append(_official_question(q, f"{set_id}_{k}", doc_id, split, path, f"{label} question {k}"))
    loaded.documents = list(articles.values())
    loaded.notes = {"format": "official v1.0.1 htmlstripped (train+dev)", "question_set_lines": lines}
    T.check_unique(questions, "question_id", source)
    return loaded


def _official_question(q: Any, qid: str, doc_id: str, split: str, path: Path, label: str) -> dict[str, Any]:
    question = T.require(q, "question", str, path, label)
    opts = T.require(q, "options", list, path, label)
    if len(opts) != 4 or not all(isinstance(o, str) for o in opts):
        raise T.BenchmarkInputError(path, label, "options", f"expected 4 strings, got {opts!r}")
    gold = T.require(q, "gold_label", int, path, label)
    if not 1 <= gold <= 4:
        raise T.BenchmarkInputError(path, label, "gold_label", f"{gold} is out of range 1..4")
    difficult = q.get("difficult")
    if difficult not in (None, 0, 1):
        raise T.BenchmarkInputError(path, label, "difficult", f"expected 0 or 1, got {difficult!r}")
    return T.multiple_choice(
        qid, doc_id, question, [o.strip() for o in opts], gold - 1, split,
        difficult=None if difficult is None else bool(difficult),
    )  # fmt: skip


# ------------------------------------------------------------------------------------------------- L-Eval


def title_and_author(text: str) -> tuple[str, str | None]:
    """L-Eval articles start with the title, then a 'By <author>' line (after an optional HTML comment)."""
    lines = [" ".join(line.split()) for line in _COMMENT.sub("", text).splitlines()]
    lines = [line for line in lines if line]
    title = lines[0] if lines else ""
    match = _BY.match(lines[1]) if len(lines) > 1 else None
    return title, match.group(1) if match else None


def parse_instruction(instruction: str, path: Path, label: str) -> tuple[str, list[str]]:
    """'<question>\\n\\n (A) ..\\n (B) ..' -> question, four options."""
    marks = list(_OPTION.finditer(instruction))
    if [m.group(1) for m in marks] != list("ABCD"):
        raise T.BenchmarkInputError(path, label, "instructions", "expected options (A) to (D), one per line")
    question = instruction[: marks[0].start()].strip()
    if not question:
        raise T.BenchmarkInputError(path, label, "instructions", "the question text is empty")
    ends = [m.start() for m in marks[1:]] + [len(instruction)]
    return question, [instruction[m.end() : end].strip() for m, end in zip(marks, ends, strict=True)]


def load_leval(source: Path, include_added: bool) -> T.Loaded:
    path = source / LEVAL_FILE
    loaded = T.Loaded([], [])
    for lineno, record in _json_lines(path, "articles"):
        label = f"line {lineno}"
        text = T.require(record, "input", str, path, label)
        instructions = T.require(record, "instructions", list, path, label)
        outputs = T.require(record, "outputs", list, path, label)
        if len(instructions) != len(outputs):
            raise T.BenchmarkInputError(
                path, label, "outputs", f"{len(outputs)} answers for {len(instructions)} questions"
            )
        doc_id = "leval-" + hashlib.sha1(text.encode()).hexdigest()[:10]
        title, author = title_and_author(text)
        loaded.documents.append(T.document(doc_id, text, title=title, author=author, origin="L-Eval quality_raw"))
        for k, (instruction, output) in enumerate(zip(instructions, outputs, strict=True), 1):
            qlabel = f"{label} question {k}"
            if not isinstance(instruction, str) or not isinstance(output, str):
                raise T.BenchmarkInputError(path, qlabel, "instructions", "questions and answers must be strings")
            if not _QUALITY_ORIGIN.search(instruction) and not include_added:
                loaded.exclude("leval_added_question")
                continue
            question, opts = parse_instruction(instruction, path, qlabel)
            gold = _GOLD.match(output)
            if not gold:
                raise T.BenchmarkInputError(path, qlabel, "outputs", f"no leading (A)-(D) letter in {output[:40]!r}")
            loaded.questions.append(
                T.multiple_choice(f"{doc_id}_{k}", doc_id, question, opts, "ABCD".index(gold.group(1)), "leval")
            )
    T.check_unique(loaded.documents, "doc_id", path)
    loaded.notes = {"format": "L-Eval quality.jsonl", "include_leval_added": include_added}
    return loaded


# -------------------------------------------------------------------------------------------------- split


def entigraph_split(loaded: T.Loaded, split: str) -> T.Loaded:
    """Keep all articles, or EntiGraph's validation (first 20% by title) or test (last 80%) articles."""
    if split == "all":
        return loaded
    ordered = sorted(loaded.documents, key=lambda d: d["title"])  # stable: ties keep file order, as EntiGraph's
    n_validation = int(VALIDATION_SHARE * len(ordered))
    part = ordered[:n_validation] if split == "entigraph_validation" else ordered[n_validation:]
    keep = {d["doc_id"] for d in part}
    dropped = [q for q in loaded.questions if q["doc_id"] not in keep]
    loaded.exclude(f"outside_{split}_documents", len(loaded.documents) - len(part))
    loaded.exclude(f"outside_{split}_questions", len(dropped))
    loaded.documents = part
    loaded.questions = [q for q in loaded.questions if q["doc_id"] in keep]
    return loaded
