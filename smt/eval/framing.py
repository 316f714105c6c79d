"""How a question is put to a model: framed by its document, as EntiGraph frames QuALITY questions.

'In the context of "<title>", written by <author> in <year>, <question>' tells a closed-book model which
document the question is about (it cannot see it); the same framed text is the retrieval query, so retrieval and
the prompt agree. Parts a benchmark does not give (author, year) are left out.
"""

from __future__ import annotations

from typing import Any

# Leading words lowercased when the question follows "In the context of ..., "; others may be proper nouns.
_LOWERCASE_LEADS = {
    "what",
    "which",
    "who",
    "whom",
    "whose",
    "when",
    "where",
    "why",
    "how",
    "in",
    "on",
    "at",
    "during",
    "after",
    "before",
    "according",
    "for",
    "from",
    "by",
    "to",
    "of",
    "is",
    "are",
    "was",
    "were",
    "did",
    "does",
    "do",
    "the",
    "a",
    "an",
    "approximately",
    "roughly",
    "about",
}


def _lead_lower(question: str) -> str:
    first = question.split(maxsplit=1)[0] if question.strip() else ""
    return question[0].lower() + question[1:] if first.lower() in _LOWERCASE_LEADS else question


def frame(title: str | None, author: str | None, year: int | str | None) -> str:
    """'In the context of "<title>", written by <author> in <year>, ' (the year only with an author)."""
    if not title:
        return ""
    byline = f", written by {author}" + (f" in {year}" if year else "") if author else ""
    return f'In the context of "{title}"{byline}, '


def framed_question(question: str, doc: dict[str, Any] | None) -> str:
    """The question in its document's frame; unframed when the document is not in the corpus."""
    prefix = frame(doc.get("title"), doc.get("author"), doc.get("year")) if doc else ""
    return prefix + _lead_lower(question) if prefix else question
