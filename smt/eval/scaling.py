"""The scaling study: accuracy against synthetic tokens over the budget sweep, its log-linear fit, and the
field's key figure (log x axis, the RAG baseline as a line), as a DVC plot and a PNG."""

from __future__ import annotations

import csv
from typing import Any

from smt import io
from smt.eval import stats

CONDITION_LABELS = {"smt_closed_book": "SMT closed-book", "smt_rag": "SMT + RAG"}


def synthetic_tokens(mix_reports: list[str]) -> dict[int, int]:
    """Budget -> synthetic (QA + document) tokens actually in that budget's mix."""
    found = {}
    for path in mix_reports:
        report = io.read_json(path)
        found[int(report["token_budget"])] = int(report["tokens"]["qa"] + report["tokens"]["docs"])
    return found


def points(scores: dict[str, list[str]], tokens: dict[int, int]) -> list[dict[str, Any]]:
    """One row per (condition, budget) from the score files of each condition."""
    rows = []
    for condition in CONDITION_LABELS:
        for path in scores[condition]:
            score = io.read_json(path)
            budget = int(score["budget"])
            rows.append(
                {
                    "condition": condition,
                    "budget": budget,
                    "synthetic_tokens": tokens[budget],
                    "accuracy": score["accuracy"],
                    "ci_low": score["ci_low"],
                    "ci_high": score["ci_high"],
                    "n": score["n"],
                }
            )
    return sorted(rows, key=lambda r: (r["condition"], r["synthetic_tokens"]))


def fit_summary(rows: list[dict[str, Any]], rag_accuracy: float) -> dict[str, Any] | None:
    fit = stats.fit_log_linear([r["synthetic_tokens"] for r in rows], [r["accuracy"] for r in rows])
    if fit is None:
        return None
    return {
        "a": fit.a,
        "b": fit.b,
        "r2": fit.r2,
        "per_doubling": fit.per_doubling,
        "tokens_to_match_rag": fit.tokens_for(rag_accuracy),
        "budgets": fit.n,
    }


def write_points(path: str, rows: list[dict[str, Any]]) -> None:
    with io.atomic_path(path) as tmp, tmp.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def plot(path: str, benchmark: str, rows: list[dict[str, Any]], rag: dict[str, Any], fits: dict[str, Any]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    fig, ax = plt.subplots(figsize=(6.4, 4.2), dpi=120)
    for condition, label in CONDITION_LABELS.items():
        mine = [r for r in rows if r["condition"] == condition]
        x = np.array([r["synthetic_tokens"] for r in mine], dtype=float)
        y = np.array([r["accuracy"] for r in mine]) * 100
        err = np.array([[r["accuracy"] - r["ci_low"], r["ci_high"] - r["accuracy"]] for r in mine]).T * 100
        line = ax.errorbar(x, y, yerr=err, fmt="o", capsize=3, label=label)
        fit = fits.get(condition)
        if fit:
            grid = np.geomspace(x.min(), x.max(), 50)
            ax.plot(grid, (fit["a"] + fit["b"] * np.log(grid)) * 100, "--", color=line[0].get_color(), alpha=0.7)
    ax.axhline(rag["accuracy"] * 100, color="grey", linestyle=":", label=f"RAG (base) {rag['accuracy']:.1%}")
    ax.axhspan(rag["ci_low"] * 100, rag["ci_high"] * 100, color="grey", alpha=0.12)
    ax.set_xscale("log")
    ax.set_xlabel("synthetic training tokens")
    ax.set_ylabel("accuracy (%)")
    ax.set_title(f"{benchmark}: accuracy vs synthetic tokens")
    ax.legend(loc="best", fontsize="small")
    fig.tight_layout()
    with io.atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)
