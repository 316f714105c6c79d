"""Chunks: passages of a benchmark's documents, in characters (with overlap, cut at sentence or word breaks) or
in the embedding model's tokens, each starting with its document's title, author and year."""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Chunk:
    """A passage of one document; `text` carries the title so a chunk is understandable on its own."""

    chunk_id: str
    doc_id: str
    title: str
    text: str
    char_start: int
    char_end: int


def _break_point(text: str, start: int, end: int) -> int:
    """Where a chunk ending near `end` should end: after the last whitespace in its second half, if any."""
    if end >= len(text):
        return len(text)
    cut = max(text.rfind(c, start + (end - start) // 2, end) for c in " \n\t")
    return cut + 1 if cut > start else end


def _next_start(text: str, start: int, end: int, overlap: int) -> int:
    """The next chunk's start: `overlap` characters back from `end`, moved forward to a word start."""
    nxt = max(end - overlap, start + 1)
    if 0 < nxt < end and not text[nxt - 1].isspace():
        space = re.search(r"\s", text[nxt:end])
        if space:
            nxt += space.end()
    return nxt


def split_text(text: str, chunk_chars: int, overlap: int) -> list[tuple[int, int]]:
    """Character spans of overlapping chunks of at most `chunk_chars`, broken at whitespace where possible."""
    if chunk_chars <= 0 or not 0 <= overlap < chunk_chars:
        raise ValueError(f"need 0 <= chunk_overlap < chunk_chars, got overlap {overlap}, chunk_chars {chunk_chars}")
    spans: list[tuple[int, int]] = []
    start = 0
    while start < len(text):
        end = _break_point(text, start, min(start + chunk_chars, len(text)))
        if text[start:end].strip():
            spans.append((start, end))
        if end >= len(text):
            break
        start = _next_start(text, start, end, overlap)
    return spans


def token_spans(text: str, tokenizer: Any, size: int, overlap: int) -> list[tuple[int, int]]:
    """Character spans of windows of `size` tokens of the embedding model, `overlap` tokens shared."""
    if size <= 0 or not 0 <= overlap < size:
        raise ValueError(f"need 0 <= chunk_overlap < chunk_size, got overlap {overlap}, chunk_size {size}")
    offsets = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True, verbose=False)["offset_mapping"]
    spans: list[tuple[int, int]] = []
    for start in range(0, len(offsets), size - overlap):
        window = offsets[start : start + size]
        spans.append((window[0][0], window[-1][1]))
        if start + size >= len(offsets):
            break
    return spans


def chunk_header(doc: dict[str, Any]) -> str:
    """The document's metadata a chunk carries so it is understandable, and findable, on its own."""
    parts = [doc.get("title") or doc["doc_id"]]
    if doc.get("author"):
        parts.append(f"by {doc['author']}")
    if doc.get("year"):
        parts.append(f"({doc['year']})")
    return " ".join(parts)


def chunk_documents(
    docs: Iterable[dict[str, Any]],
    size: int,
    overlap: int,
    unit: str = "chars",
    prepend_metadata: bool = True,
    tokenizer: Any = None,
) -> list[Chunk]:
    """Chunks of every document, numbered `<doc_id>#<n>` from 0, `size` characters or embedding-model tokens."""
    chunks = []
    for doc in docs:
        if unit == "tokens":
            spans = token_spans(doc["text"], tokenizer, size, overlap)
        else:
            spans = split_text(doc["text"], size, overlap)
        for n, (start, end) in enumerate(spans):
            body = doc["text"][start:end].strip()
            text = f"{chunk_header(doc)}\n{body}" if prepend_metadata else body
            chunks.append(Chunk(f"{doc['doc_id']}#{n}", doc["doc_id"], doc.get("title") or "", text, start, end))
    return chunks


# ---------------------------------------------------------------------------------------------- models
