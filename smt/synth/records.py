"""Synthetic records as text: what mixing trains on and what the audits measure, read stream by stream."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from smt import io


def text(record: dict[str, Any]) -> str:
    """A QA as 'Question: ...\nAnswer: ...'; a synthetic document as its text."""
    if "question" in record and "answer" in record:
        return f"Question: {record['question']}\nAnswer: {record['answer']}"
    return record["text"]


def streams(qa: str, docs: list[str]) -> dict[str, list[dict[str, Any]]]:
    """Records by stream: 'qa', then each document generator (named by its file, results/.../docs/<name>.jsonl)."""
    found = {"qa": io.read_jsonl(qa)}
    for path in docs:
        found[Path(path).stem] = io.read_jsonl(path)
    return found
