"""Benchmarks: loaders from published formats to smt's normalized tables, and their download pins."""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

from smt.benchmarks.tables import Loaded

NAMES = ("demo", "quality", "longhealth", "financebench")
DOWNLOADABLE = ("quality", "longhealth", "financebench")


def load(name: str, options: dict[str, Any], workers: int = 1) -> Loaded:
    """Read a benchmark from the folder its options name (`source`), validating every record."""
    if name not in NAMES:
        raise ValueError(f"unknown benchmark '{name}'; known: {list(NAMES)}")
    source = Path(options["source"])
    if not source.is_dir():
        hint = f" (fetch it with `python -m smt download {name}`)" if name in DOWNLOADABLE else ""
        raise FileNotFoundError(f"benchmarks.{name}.source: folder {source} does not exist{hint}")
    loader = importlib.import_module(f"smt.benchmarks.loaders.{name}")
    if name == "financebench":
        return loader.load(source, options, workers)
    return loader.load(source, options)
