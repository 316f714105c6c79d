"""The compute a run spent: C = 2MD for generating D synthetic tokens with an M-parameter generator, plus 6ND for
training an N-parameter student on D tokens."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def generation_compute(report: dict[str, Any], base: str, n_params: int) -> dict[str, Any]:
    """2MD for the synthetic data behind the mix: D from the generation manifests, M when the generator is the
    base model folder (otherwise unknown: a remote or other model)."""
    generation = report.get("generation") or {}
    tokens = generation.get("completion_tokens")
    models = generation.get("models") or []
    local = bool(models) and all(m.get("path") and Path(m["path"]).resolve() == Path(base).resolve() for m in models)
    found: dict[str, Any] = {"generated_tokens": tokens, "generator_parameters": n_params if local else None}
    if tokens is None:
        found["generation_flops_2md"] = None
        found["generation_note"] = "the mix report records no generation manifests"
    elif not local:
        found["generation_flops_2md"] = None
        ids = ", ".join(str(m.get("id")) for m in models) or "unknown"
        found["generation_note"] = f"generator {ids} is not the base model folder; its parameter count is unknown"
    else:
        found["generation_flops_2md"] = 2 * n_params * tokens
        found["generation_note"] = "all synthetic streams of the benchmark (shared by every token budget)"
    return found
