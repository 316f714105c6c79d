"""Long documents as sections that fit a generation request.

A FinanceBench filing is about 100K tokens: put whole into a prompt it exceeds most generators' context, and a
generator asked about all of it at once attends to little of it. A document longer than `section_tokens` of the
generator's tokens is therefore split, and the generators work on each section as on a document of its own (its
own requests, seeds and share of the stream's target). `by: segments` groups the document's own segments (a
filing's pages, a patient's clinical texts) in order while they fit, and cuts a segment that alone is too long
into token windows; `by: tokens` cuts windows of the generator's tokens. A document that fits stays whole, with
its own id, so its requests and records are those of an unsplit run.

Every synthetic record names its section (`section`: its index, `section_name`: the pages or tokens it covers,
`all` for a whole document); the generators see a section under a unit id (`<doc_id>#s<index>`), mapped back to
the document's id in the records.
"""

from __future__ import annotations

import bisect
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

WHOLE = "all"
PROMPT_MARGIN = 1024  # tokens left for a prompt's instructions around the document
BY = ("segments", "tokens")


def unit_id(doc_id: str, index: int, count: int) -> str:
    return doc_id if count == 1 else f"{doc_id}#s{index}"


def unit_of(record: dict[str, Any]) -> str:
    """The unit id a record was generated from (its document's id when the document was not split)."""
    index = int(record.get("section", 0))
    return record["doc_id"] if record.get("section_name", WHOLE) == WHOLE else f"{record['doc_id']}#s{index}"


def context_length(model_path: str, max_model_len: int = 0) -> int | None:
    """The generator's context in tokens: an engine's max_model_len when set, else the model's positions."""
    if max_model_len:
        return max_model_len
    config = Path(model_path) / "config.json"
    if not config.is_file():
        return None
    values = json.loads(config.read_text())
    return (values.get("text_config") or values).get("max_position_embeddings")


def section_budget(requested: int, context: int | None, max_new_tokens: int) -> int:
    """Tokens a section may hold: the requested size, or (0) the context less the new tokens and the margin."""
    if requested:
        return requested
    if context is None:
        return 0  # no known context: documents stay whole, and an endpoint refuses what does not fit
    budget = context - max_new_tokens - PROMPT_MARGIN
    if budget < 1:
        raise ValueError(
            f"generation.section_tokens = 0: the generator's context of {context} tokens leaves no room for a "
            f"section after {max_new_tokens} new tokens and {PROMPT_MARGIN} for the prompt; set it explicitly"
        )
    return budget


@dataclass(frozen=True)
class Span:
    name: str
    start: int  # characters
    end: int


def _windows(offsets: list[tuple[int, int]], lo: int, hi: int, size: int, prefix: str) -> list[Span]:
    """Windows of `size` tokens over tokens lo..hi-1 (offsets: each token's characters)."""
    spans = []
    for first in range(lo, hi, size):
        last = min(first + size, hi) - 1
        spans.append(Span(f"{prefix}tokens {first - lo}-{last - lo}", offsets[first][0], offsets[last][1]))
    return spans


def split_spans(
    text: str, segments: list[dict[str, Any]] | None, offsets: list[tuple[int, int]], size: int, by: str
) -> list[Span]:
    """Character spans of a text's sections of at most `size` tokens (offsets: each token's characters)."""
    if by not in BY:
        raise ValueError(f"generation.section_by = {by!r}; allowed: {list(BY)}")
    if len(offsets) <= size:
        return [Span(WHOLE, 0, len(text))]
    if by == "tokens" or not segments:
        return _windows(offsets, 0, len(offsets), size, "")
    starts = [start for start, _ in offsets]
    spans: list[Span] = []
    group: list[tuple[str, int, int]] = []  # (name, first token, end token) of the segments in the open section

    def close() -> None:
        if group:
            name = group[0][0] if len(group) == 1 else f"{group[0][0]}..{group[-1][0]}"
            spans.append(Span(name, offsets[group[0][1]][0], offsets[group[-1][2] - 1][1]))
            group.clear()

    for segment in segments:
        lo, hi = bisect.bisect_left(starts, segment["start"]), bisect.bisect_left(starts, segment["end"])
        if hi <= lo:
            continue  # a segment without tokens (an empty page)
        if hi - lo > size:
            close()
            spans += _windows(offsets, lo, hi, size, f"{segment['name']} ")
        elif group and hi - group[0][1] > size:
            close()
            group.append((segment["name"], lo, hi))
        else:
            group.append((segment["name"], lo, hi))
    close()
    return spans


def split(documents: list[dict[str, Any]], tokenizer: Any, size: int, by: str) -> list[dict[str, Any]]:
    """Every document as the units the generators work on: itself when it fits in `size` tokens (or `size` is 0),
    else its sections, each a copy of the document with its section's text, a unit id and its section named."""
    units = []
    for doc in documents:
        if not size:
            units.append({**doc, "section": 0, "section_name": WHOLE, "source_doc_id": doc["doc_id"]})
            continue
        offsets = tokenizer(doc["text"], add_special_tokens=False, return_offsets_mapping=True, verbose=False)
        spans = split_spans(doc["text"], doc.get("segments"), offsets["offset_mapping"], size, by)
        for index, span in enumerate(spans):
            units.append(
                {
                    **doc,
                    "doc_id": unit_id(doc["doc_id"], index, len(spans)),
                    "text": doc["text"][span.start : span.end],
                    "section": index,
                    "section_name": span.name,
                    "source_doc_id": doc["doc_id"],
                }
            )
    return sorted(units, key=lambda u: u["doc_id"])


def restore(entries: list[dict[str, Any]], units: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Records (or rejections) made from units, with their document's id and their section named."""
    by_unit = {u["doc_id"]: u for u in units}
    restored = []
    for entry in entries:
        unit = by_unit.get(entry["doc_id"])
        if unit is None:
            restored.append(entry)
            continue
        restored.append(
            {**entry, "doc_id": unit["source_doc_id"], "section": unit["section"], "section_name": unit["section_name"]}
        )
    return restored
