"""Prompt templates, kept in versioned files; their hashes are recorded in every manifest."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

DIR = Path(__file__).parent


def load(name: str) -> str:
    """A prompt file's text, exactly (templates that end in a newline keep it)."""
    return (DIR / f"{name}.txt").read_text()


def text(name: str) -> str:
    """A prompt whose file's final newline is not part of it (the model's turn follows on the same line)."""
    return load(name).removesuffix("\n")


def digest(name: str) -> str:
    return hashlib.sha256(load(name).encode()).hexdigest()[:16]


_SECTION = re.compile(r"(?m)^\[\[([a-z0-9_]+)\]\]\s*$")


def sections(name: str) -> dict[str, str]:
    """A prompt file holding several prompts, each after a `[[name]]` line (one file per generator, so that
    the generator's stages depend on exactly its own prompts)."""
    parts = _SECTION.split(load(name))
    found = {parts[i]: parts[i + 1].strip() + "\n" for i in range(1, len(parts), 2)}
    if not found:
        raise ValueError(f"{DIR / (name + '.txt')}: no [[section]] headings")
    return found
