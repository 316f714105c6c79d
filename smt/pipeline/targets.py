"""How many tokens each synthetic stream must hold: enough for the largest budget of any recipe that uses it.

A recipe gives each stream a share of its synthetic tokens; a budget B needs round(B x share) tokens of that
stream. A stream's target is the largest such need over every recipe and budget (a stream named
`<benchmark>/<stream>` in a recipe is that benchmark's stream, drawn into every benchmark's mix). The target is
a derived input of the stream's generation stage (smt.pipeline.derived): adding a recipe or a budget reruns a
generation stage only when it raises that stream's target.
"""

from __future__ import annotations

from typing import Any

from smt.pipeline import params as P

FOLDER = "results/.derived/targets"


def path(benchmark: str, stream: str) -> str:
    return f"{FOLDER}/{benchmark}/{stream}.json"


def split(name: str, benchmark: str) -> tuple[str, str]:
    """(benchmark, stream) of a recipe's stream name, read from the mix of `benchmark`."""
    other, _, stream = name.rpartition("/")
    return (other or benchmark), stream


def targets(params: dict[str, Any]) -> dict[tuple[str, str], int]:
    """(benchmark, stream) -> tokens, for every stream some recipe uses (0 for a generated stream none uses)."""
    found: dict[tuple[str, str], int] = {}
    budgets = [int(b) for b in P.get(params, "mix.token_budgets")]
    for benchmark in P.get(params, "benchmarks"):
        for stream in ("qa", *P.get(params, "synth_docs.generators")):
            found.setdefault((benchmark, stream), 0)
        for shares in P.get(params, "recipes").values():
            for name, share in shares.items():
                key = split(name, benchmark)
                found[key] = max(found.get(key, 0), *(round(b * share) for b in budgets))
    return found


def texts(params: dict[str, Any]) -> dict[str, str]:
    """The target file of every stream, by path."""
    return {path(b, s): f'{{"target_tokens": {n}}}\n' for (b, s), n in sorted(targets(params).items())}
