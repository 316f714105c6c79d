"""The headline table: accuracy of every condition on every benchmark, in one markdown file."""

from __future__ import annotations

from typing import Any

from smt import io
from smt.context import StageContext
from smt.registry import CONDITIONS

LABELS = {
    "closed_book_base": "Closed-book (base)",
    "rag_base": "RAG (base)",
    "smt_closed_book": "SMT closed-book",
    "smt_rag": "SMT + RAG",
}
LEGEND = {
    "closed_book_base": "the base model answers from its weights alone (the floor).",
    "rag_base": "the base model answers with retrieved excerpts in its prompt (the RAG ceiling SMT aims at).",
    "smt_closed_book": "the model after Synthetic Mixed Training answers from its weights alone.",
    "smt_rag": "the SMT model answers with retrieved excerpts (whether SMT and RAG add up).",
}
SCORER_NOTES = {
    "loglik": "each option scored by the mean log-probability of its tokens as the answer; the likeliest wins",
}


def load_scores(ctx: StageContext) -> dict[tuple[str, str], dict[str, Any]]:
    """(benchmark, condition) -> score record, checked against the file it claims to be. The SMT conditions
    show the model trained on the largest token budget."""
    scores: dict[tuple[str, str], dict[str, Any]] = {}
    for cond in CONDITIONS:
        for path in ctx.inputs[f"scores_{cond}"]:
            record = io.read_json(path)
            if record.get("condition") != cond:
                raise ValueError(f"{path}: holds condition {record.get('condition')!r}, expected {cond!r}")
            key = (record["benchmark"], cond)
            if key not in scores or (record.get("budget") or 0) > (scores[key].get("budget") or 0):
                scores[key] = record
    return scores


def cell(record: dict[str, Any] | None, decimals: int) -> str:
    if record is None:
        return "n/a"
    return f"{100 * record['accuracy']:.{decimals}f}% (n={record['n']})"


def table(scores: dict[tuple[str, str], dict[str, Any]], benchmarks: list[str], decimals: int) -> list[str]:
    lines = ["| Benchmark | " + " | ".join(LABELS[c] for c in CONDITIONS) + " |", "|---|" + "---:|" * len(CONDITIONS)]
    for bench in benchmarks:
        lines.append(f"| {bench} | " + " | ".join(cell(scores.get((bench, c)), decimals) for c in CONDITIONS) + " |")
    return lines


def render(scores: dict[tuple[str, str], dict[str, Any]], benchmarks: list[str], decimals: int) -> str:
    scorers = sorted({r["scorer"] for r in scores.values()})
    lines = [
        "# Synthetic Mixed Training: results",
        "",
        "Accuracy on each benchmark's multiple-choice questions (percent, with the number of questions scored).",
        "",
        *table(scores, benchmarks, decimals),
        "",
        "Scorer: " + "; ".join(f"{s} ({SCORER_NOTES.get(s, 'see smt/scoring.py')})" for s in scorers) + ".",
        "",
        "Conditions:",
        "",
        *(f"- **{LABELS[c]}**: {LEGEND[c]}" for c in CONDITIONS),
    ]
    return "\n".join(lines) + "\n"


def run(ctx: StageContext) -> None:
    scores = load_scores(ctx)
    benchmarks = list(dict.fromkeys(bench for bench, _ in scores))
    io.write_text(ctx.outputs["report"], render(scores, benchmarks, ctx.p("report.decimals")))
    ctx.log.info("report: %d benchmarks x %d conditions", len(benchmarks), len(CONDITIONS))
