"""Derived inputs: small files that follow from params.yaml and from what it names, without being params.

Two kinds: the content fingerprints of model folders and packages (smt.pipeline.externals) and the token
targets of the synthetic streams (smt.pipeline.targets). A stage that reads one declares it as an input, so DVC
hashes it; Snakemake gets its digest inside the stage's params stamp instead (smt.pipeline.stamps), so a value
set back is no change. A file is rewritten only when its content differs.

They are refreshed when Snakemake parses the workflow and by every `python -m smt` tool (`tools.prepare`), by
each stage before it runs (its own), and under DVC by the `refresh` stage, which `dvc repro` runs every time
(`always_changed`), so that a re-downloaded model or a new budget is seen by `dvc repro` and `dvc exp run`.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from smt import io
from smt.pipeline import externals, targets

FOLDER = "results/.derived"


def is_derived(path: str) -> bool:
    return path.startswith(FOLDER + "/")


def paths(params: dict[str, Any]) -> list[str]:
    """Every derived file's path (without computing any content)."""
    return [*(externals.path(n) for n in externals.references(params)), *targets.texts(params)]


def texts(params: dict[str, Any], only: list[str] | None = None) -> dict[str, str]:
    """Every derived file's content by path (or only those listed)."""
    names = externals.references(params)
    if only is not None:
        names = [n for n in names if externals.path(n) in only]
    found = {**externals.texts(names, params), **targets.texts(params)}
    return found if only is None else {p: t for p, t in found.items() if p in only}


def refresh(params: dict[str, Any], only: list[str] | None = None) -> None:
    """Rewrite each derived file whose content differs (its date moves only then)."""
    for path, text in texts(params, only).items():
        target = Path(path)
        if not target.exists() or target.read_text() != text:
            io.write_text(target, text)


def digest(path: str) -> str:
    """A short hash of a derived file as it is now ('missing' before the first refresh)."""
    target = Path(path)
    return hashlib.sha256(target.read_bytes()).hexdigest()[:16] if target.exists() else "missing"
