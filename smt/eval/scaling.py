"""The scaling study: accuracy against unique synthetic tokens over the budget sweep, one log-linear fit per
recipe and condition, and the field's key figure (log x axis, one curve per recipe, the RAG baseline as a
line), as a DVC plot and a PNG."""

from __future__ import annotations

import csv
from typing import Any

from smt import io
from smt.eval import stats

CONDITION_LABELS = {"smt_closed_book": "closed-book", "smt_rag": "+ RAG"}


def synthetic_tokens(mix_reports: list[str]) -> dict[tuple[str, int], int]:
    """(recipe, budget) -> unique synthetic tokens in that mix (repeats do not count)."""
    found = {}
    for path in mix_reports:
        report = io.read_json(path)
        found[(report["recipe"], int(report["token_budget"]))] = int(report["unique_synthetic_tokens"])
    return found


def points(scores: list[str], tokens: dict[tuple[str, int], int]) -> list[dict[str, Any]]:
    """One row per (recipe, condition, budget) from the SMT score files."""
    rows = []
    for path in scores:
        score = io.read_json(path)
        recipe, budget = score["recipe"], int(score["budget"])
        rows.append(
            {
                "recipe": recipe,
                "condition": score["condition"],
                "budget": budget,
                "synthetic_tokens": tokens[(recipe, budget)],
                "accuracy": score["accuracy"],
                "ci_low": score["ci_low"],
                "ci_high": score["ci_high"],
                "n": score["n"],
            }
        )
    return sorted(rows, key=lambda r: (r["recipe"], r["condition"], r["synthetic_tokens"]))


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


def fits(rows: list[dict[str, Any]], rag_accuracy: float) -> dict[str, dict[str, Any]]:
    """recipe -> condition -> fit (None with a single budget)."""
    found: dict[str, dict[str, Any]] = {}
    for row in rows:
        found.setdefault(row["recipe"], {})
    for recipe, by_condition in found.items():
        for condition in CONDITION_LABELS:
            mine = [r for r in rows if r["recipe"] == recipe and r["condition"] == condition]
            by_condition[condition] = fit_summary(mine, rag_accuracy)
    return found


def write_points(path: str, rows: list[dict[str, Any]]) -> None:
    with io.atomic_path(path) as tmp, tmp.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def plot(path: str, benchmark: str, rows: list[dict[str, Any]], rag: dict[str, Any], found: dict[str, Any]) -> None:
    """Accuracy vs unique synthetic tokens on a log axis: per recipe, closed-book (solid) and with RAG (dashed),
    the fits as lines, the base model with RAG as the horizontal baseline with its interval."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    fig, ax = plt.subplots(figsize=(6.8, 4.4), dpi=120)
    for recipe in found:
        color = None
        for condition, label in CONDITION_LABELS.items():
            mine = [r for r in rows if r["recipe"] == recipe and r["condition"] == condition]
            x = np.array([r["synthetic_tokens"] for r in mine], dtype=float)
            y = np.array([r["accuracy"] for r in mine]) * 100
            err = np.array([[r["accuracy"] - r["ci_low"], r["ci_high"] - r["accuracy"]] for r in mine]).T * 100
            marker = "o" if condition == "smt_closed_book" else "s"
            line = ax.errorbar(x, y, yerr=err, fmt=marker, capsize=3, color=color, label=f"{recipe} {label}")
            color = line[0].get_color()
            fit = found[recipe].get(condition)
            if fit:
                grid = np.geomspace(x.min(), x.max(), 50)
                style = "-" if condition == "smt_closed_book" else "--"
                ax.plot(grid, (fit["a"] + fit["b"] * np.log(grid)) * 100, style, color=color, alpha=0.7)
    ax.axhline(rag["accuracy"] * 100, color="grey", linestyle=":", label=f"RAG (base) {rag['accuracy']:.1%}")
    ax.axhspan(rag["ci_low"] * 100, rag["ci_high"] * 100, color="grey", alpha=0.12)
    ax.set_xscale("log")
    ax.set_xlabel("unique synthetic training tokens")
    ax.set_ylabel("accuracy (%)")
    ax.set_title(f"{benchmark}: accuracy vs synthetic tokens, per recipe")
    ax.legend(loc="best", fontsize="small")
    fig.tight_layout()
    with io.atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)
