"""Benchmarks: loaders from published formats to smt's normalized tables, and their download pins.

A benchmark is one loader module, `smt/benchmarks/loaders/<name>.py` with `load(source, options, workers)`, its
entry in the params schema (`benchmarks.<name>`: source folder and options) and, when its files can be fetched,
its pins in `sources.yaml`. Nothing else lists benchmarks: the command line, the download rule and the stages
find them here.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

if TYPE_CHECKING:
    from smt.benchmarks.tables import Loaded

LOADERS = Path(__file__).parent / "loaders"
NAMES = tuple(sorted(p.stem for p in LOADERS.glob("*.py") if not p.name.startswith("_")))
DOWNLOADABLE = tuple(sorted(yaml.safe_load((Path(__file__).parent / "sources.yaml").read_text())))


def load(name: str, options: dict[str, Any], workers: int = 1) -> Loaded:
    """Read a benchmark from the folder its options name (`source`), validating every record."""
    if name not in NAMES:
        raise ValueError(f"unknown benchmark '{name}'; known: {list(NAMES)}")
    source = Path(options["source"])
    if not source.is_dir():
        hint = f" (fetch it with `python -m smt download {name}`)" if name in DOWNLOADABLE else ""
        raise FileNotFoundError(f"benchmarks.{name}.source: folder {source} does not exist{hint}")
    loaded = importlib.import_module(f"smt.benchmarks.loaders.{name}").load(source, options, workers)
    if not loaded.questions:  # every later stage would run on nothing and fail far from the cause
        excluded = f" (excluded: {loaded.excluded})" if loaded.excluded else ""
        raise ValueError(f"benchmarks.{name}: {source} gives no questions to ingest{excluded}")
    return loaded  # documents may all be missing (FinanceBench without its PDFs): each question says so
