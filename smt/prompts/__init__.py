"""Prompt templates, kept in versioned files; their hashes are recorded in every manifest."""

from __future__ import annotations

import hashlib
from pathlib import Path

DIR = Path(__file__).parent


def load(name: str) -> str:
    return (DIR / f"{name}.txt").read_text()


def digest(name: str) -> str:
    return hashlib.sha256(load(name).encode()).hexdigest()[:16]
