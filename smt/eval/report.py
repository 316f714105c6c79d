"""The results page: every benchmark's accuracy per condition with 95% intervals, the scaling figures, and the
compute spent (C = 2MD + 6ND), as markdown (results/report.md) and a self-contained HTML page."""

from __future__ import annotations

import base64
import html
import json
import struct
from pathlib import Path
from typing import Any

from smt import io
from smt.eval.conditions import CONDITIONS, LABELS, LEGEND

SCORER_NOTES = {
    "loglik": "each option scored by the mean log-probability of its tokens as the answer; the likeliest wins",
    "generate": "chain of thought with few-shot examples, the letter parsed from 'Answer: X.' (none = wrong)",
    "judge": "free-form answer graded against the gold answer by an LLM judge",
}


def load_scores(paths: dict[str, list[str]]) -> dict[tuple[str, str], dict[str, Any]]:
    """(benchmark, condition) -> score record, from each condition's score files, checked against the file it
    claims to be. The SMT conditions show the model trained on the largest token budget (the scaling figure
    shows every budget)."""
    scores: dict[tuple[str, str], dict[str, Any]] = {}
    for cond in CONDITIONS:
        for path in paths[cond]:
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
    pct = lambda v: f"{100 * v:.{decimals}f}"  # noqa: E731
    return f"{pct(record['accuracy'])}% [{pct(record['ci_low'])}, {pct(record['ci_high'])}] (n={record['n']})"


def score_rows(scores: dict[tuple[str, str], dict[str, Any]], decimals: int) -> list[list[str]]:
    benchmarks = list(dict.fromkeys(bench for bench, _ in scores))
    return [[b, *(cell(scores.get((b, c)), decimals) for c in CONDITIONS)] for b in benchmarks]


def safetensors_parameters(model_dir: str) -> int:
    """Parameter count from the safetensors headers (shapes only; no weights are read)."""
    total = 0
    for path in sorted(Path(model_dir).glob("*.safetensors")):
        with path.open("rb") as fh:
            (size,) = struct.unpack("<Q", fh.read(8))
            header = json.loads(fh.read(size))
        for name, entry in header.items():
            if name != "__metadata__":
                count = 1
                for dim in entry["shape"]:
                    count *= dim
                total += count
    return total


def compute(generator: str, manifests: list[str], train_metrics: list[str]) -> dict[str, Any]:
    """C = 2MD (generating D synthetic tokens with an M-parameter generator) + 6ND (training an N-parameter
    student on D tokens), summed over benchmarks and budgets."""
    generator_params = safetensors_parameters(generator)
    generated = 0
    for path in manifests:
        manifest = io.read_json(path)
        generated += int(manifest.get("generation", {}).get("completion_tokens", 0))
    train = [io.read_json(p) for p in train_metrics]
    training_flops = sum(int(m.get("train_flops_6nd", 0)) for m in train)
    generation_flops = 2 * generator_params * generated
    return {
        "generator_parameters": generator_params,
        "generated_tokens": generated,
        "generation_flops_2md": generation_flops,
        "training_tokens": sum(int(m.get("tokens_seen", 0)) for m in train),
        "training_flops_6nd": training_flops,
        "total_flops": generation_flops + training_flops,
        "training_runs": len(train),
    }


def scaling(fits: list[str], figures: list[str]) -> list[dict[str, Any]]:
    found = []
    for fit_path, figure in zip(fits, figures, strict=True):
        found.append({**io.read_json(fit_path), "figure": figure})
    return found


def _fit_line(item: dict[str, Any]) -> str:
    fit = item.get("fit_smt_closed_book")
    if not fit:
        return f"{item['benchmark']}: one budget only, no fit (list several in `mix.token_budgets`)."
    match = fit["tokens_to_match_rag"]
    reach = f"reaches RAG (base) at about {match:.3g} synthetic tokens" if match else "does not rise towards RAG"
    return (
        f"{item['benchmark']}: SMT closed-book accuracy = {fit['a']:.3f} + {fit['b']:.4f} ln(tokens) "
        f"(R² {fit['r2']:.2f}, {100 * fit['per_doubling']:+.2f} points per doubling); {reach}."
    )


def markdown(rows: list[list[str]], scorers: list[str], figures: list[dict[str, Any]], flops: dict[str, Any]) -> str:
    header = ["Benchmark", *(LABELS[c] for c in CONDITIONS)]
    lines = [
        "# Synthetic Mixed Training: results",
        "",
        "Accuracy per benchmark and condition: percent, [95% bootstrap interval], (questions scored).",
        "",
        "| " + " | ".join(header) + " |",
        "|---|" + "---:|" * len(CONDITIONS),
        *("| " + " | ".join(r) + " |" for r in rows),
        "",
        "Scorer: " + "; ".join(f"{s} ({SCORER_NOTES.get(s, 'see smt/eval/scorers.py')})" for s in scorers) + ".",
        "",
        "Conditions:",
        "",
        *(f"- **{LABELS[c]}**: {LEGEND[c]}" for c in CONDITIONS),
        "",
        "## Scaling",
        "",
    ]
    for item in figures:
        rel = Path(item["figure"]).relative_to("results").as_posix()
        lines += [f"![{item['benchmark']} scaling]({rel})", "", _fit_line(item), ""]
    lines += [
        "## Compute",
        "",
        f"C = 2MD + 6ND = {flops['total_flops']:.3g} FLOPs: generation {flops['generation_flops_2md']:.3g} "
        f"({flops['generated_tokens']} tokens from a {flops['generator_parameters'] / 1e6:.0f}M-parameter "
        f"generator), training {flops['training_flops_6nd']:.3g} ({flops['training_tokens']} tokens over "
        f"{flops['training_runs']} runs).",
    ]
    return "\n".join(lines) + "\n"


def html_page(markdown_rows: list[list[str]], figures: list[dict[str, Any]], flops: dict[str, Any]) -> str:
    """One self-contained page (figures inlined), for a browser or a CI artifact."""
    esc = html.escape
    head = "".join(f"<th>{esc(h)}</th>" for h in ["Benchmark", *(LABELS[c] for c in CONDITIONS)])
    body = "".join("<tr>" + "".join(f"<td>{esc(c)}</td>" for c in row) + "</tr>" for row in markdown_rows)
    images = "".join(
        f"<h3>{esc(f['benchmark'])}</h3><img alt='scaling' src='data:image/png;base64,"
        f"{base64.b64encode(Path(f['figure']).read_bytes()).decode()}'><p>{esc(_fit_line(f))}</p>"
        for f in figures
    )
    return (
        "<!doctype html><html><head><meta charset='utf-8'><title>smt results</title><style>"
        "body{font-family:sans-serif;max-width:960px;margin:2em auto}table{border-collapse:collapse}"
        "td,th{border:1px solid #ccc;padding:4px 8px;text-align:right}td:first-child{text-align:left}</style>"
        f"</head><body><h1>Synthetic Mixed Training: results</h1><table><tr>{head}</tr>{body}</table>"
        f"<p>Accuracy, [95% bootstrap interval], (questions scored).</p><h2>Scaling</h2>{images}"
        f"<h2>Compute</h2><p>C = 2MD + 6ND = {flops['total_flops']:.3g} FLOPs "
        f"(generation {flops['generation_flops_2md']:.3g}, training {flops['training_flops_6nd']:.3g}).</p>"
        "</body></html>\n"
    )
