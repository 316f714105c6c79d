"""The results page, as the paper reports it: per benchmark, the base model closed-book and with RAG, then each
recipe's model closed-book and with RAG (largest budget), with 95% intervals and the gains over RAG; a summary
of how many benchmarks each recipe beats RAG on; every trained model (each recipe and token budget) with its
gains over RAG; the accuracy and interval of every scorer run on every condition (`eval.scorer` and
`eval.extra_scorers`), with chance and, for generated answers, the accuracy over attempted answers; the scaling
figures; and the compute spent (C = 2MD + 6ND). Markdown (results/report.md) and a self-contained HTML page.

Longer than most modules: the Markdown page and the HTML page render the same tables, side by side so that
they cannot drift apart."""

from __future__ import annotations

import base64
import html
from pathlib import Path
from typing import Any

from smt import io
from smt.eval.conditions import CONDITIONS, LEGEND
from smt.train.compute import parameter_count

SCORER_NOTES = {
    "letter": "the options listed with letters; the letter the model gives the most probability wins (chance 1/k)",
    "option_loglik": "each option's text scored by the mean log-probability of its tokens as the answer to the bare "
    "question (cloze); the likeliest wins",
    "generate": "k-shot chain of thought, the letter parsed from 'Answer: X.' (none = wrong; the accuracy over "
    "attempted answers leaves those out)",
    "judge": "free-form answer graded against the gold answer by an LLM judge",
}


Table = list[list[str]]


def load_all(paths: list[str]) -> list[dict[str, Any]]:
    """Every score record, in the order given; a record of an unknown condition is an error naming its file."""
    records = []
    for path in paths:
        record = io.read_json(path)
        if record.get("condition") not in CONDITIONS:
            raise ValueError(f"{path}: holds condition {record.get('condition')!r}, expected one of {CONDITIONS}")
        records.append(record)
    return records


def load_scores(paths: list[str]) -> dict[tuple[str, str, str], dict[str, Any]]:
    """(benchmark, recipe or 'base', condition) -> score record; an SMT recipe's entry is its model trained on
    the largest token budget (the scaling figure shows every budget)."""
    return largest_budget(load_all(paths))


def largest_budget(records: list[dict[str, Any]]) -> dict[tuple[str, str, str], dict[str, Any]]:
    scores: dict[tuple[str, str, str], dict[str, Any]] = {}
    for record in records:
        key = (record["benchmark"], record.get("recipe") or "base", record["condition"])
        if key not in scores or (record.get("budget") or 0) > (scores[key].get("budget") or 0):
            scores[key] = record
    return scores


def cell(record: dict[str, Any] | None, decimals: int) -> str:
    if record is None:
        return "n/a"
    pct = lambda v: f"{100 * v:.{decimals}f}"  # noqa: E731
    return f"{pct(record['accuracy'])}% [{pct(record['ci_low'])}, {pct(record['ci_high'])}] (n={record['n']})"


def gain(record: dict[str, Any] | None, rag: dict[str, Any] | None, decimals: int) -> str:
    """Accuracy minus the base model's with RAG, in points."""
    return f"{100 * (record['accuracy'] - rag['accuracy']):+.{decimals}f}" if record and rag else "n/a"


Wins = dict[str, dict[str, list[str]]]


def tables(
    scores: dict[tuple[str, str, str], dict[str, Any]], recipes: dict[str, dict[str, float]], decimals: int
) -> tuple[dict[str, Table], Wins]:
    """Per benchmark: rows of (model, closed-book, with RAG, gain over RAG closed-book, gain over RAG with RAG),
    and per recipe the benchmarks on which its closed-book and its RAG accuracy beat the base model's RAG
    accuracy."""
    found: dict[str, Table] = {}
    wins: Wins = {r: {"closed_book": [], "rag": []} for r in recipes}
    for benchmark in dict.fromkeys(b for b, _, _ in scores):
        rag = scores.get((benchmark, "base", "rag_base"))
        base = scores.get((benchmark, "base", "closed_book_base"))
        rows = [["base", cell(base, decimals), cell(rag, decimals), gain(base, rag, decimals), ""]]
        for recipe, shares in recipes.items():
            closed = scores.get((benchmark, recipe, "smt_closed_book"))
            with_rag = scores.get((benchmark, recipe, "smt_rag"))
            budget = (closed or with_rag or {}).get("budget")
            mix = ", ".join(f"{stream} {share:g}" for stream, share in shares.items())
            rows.append(
                [
                    f"{recipe} ({mix}; {budget} tokens)",
                    cell(closed, decimals),
                    cell(with_rag, decimals),
                    gain(closed, rag, decimals),
                    gain(with_rag, rag, decimals),
                ]
            )
            for kind, record in (("closed_book", closed), ("rag", with_rag)):
                if record and rag and record["accuracy"] > rag["accuracy"]:
                    wins[recipe][kind].append(benchmark)
        found[benchmark] = rows
    return found, wins


MODEL_HEADER = ["benchmark", "recipe", "token budget", "closed-book", "gain over RAG", "with RAG", "gain over RAG"]


def model_rows(records: list[dict[str, Any]], decimals: int) -> Table:
    """Every trained model (each recipe and token budget) on each benchmark: its closed-book and RAG accuracy, each
    with its gain over the base model's RAG accuracy."""
    rag = {r["benchmark"]: r for r in records if r["condition"] == "rag_base"}
    trained: dict[tuple[str, str, int], dict[str, dict[str, Any]]] = {}
    for r in records:
        if r["condition"] in ("smt_closed_book", "smt_rag"):
            trained.setdefault((r["benchmark"], r["recipe"], r.get("budget") or 0), {})[r["condition"]] = r
    rows = []
    for (benchmark, recipe, budget), found in sorted(trained.items()):
        closed, with_rag, base = found.get("smt_closed_book"), found.get("smt_rag"), rag.get(benchmark)
        rows.append(
            [
                benchmark,
                recipe,
                str(budget),
                cell(closed, decimals),
                gain(closed, base, decimals),
                cell(with_rag, decimals),
                gain(with_rag, base, decimals),
            ]
        )
    return rows


SCORER_HEADER = ["benchmark", "model", "condition", "scorer", "accuracy", "chance", "attempted", "where"]


def model_name(record: dict[str, Any]) -> str:
    return "base" if not record.get("recipe") else f"{record['recipe']} ({record.get('budget')} tokens)"


def scorer_rows(records: list[dict[str, Any]], decimals: int) -> Table:
    """Every scorer run on every condition (a score file's `scorers`; an older file without them, its one scorer):
    accuracy with its interval, chance (multiple choice), the accuracy over attempted answers with the count of
    unparseable ones (generated answers), and the device and dtype it ran on."""
    pct = lambda v: f"{100 * v:.{decimals}f}%"  # noqa: E731
    rows = []
    order = {c: i for i, c in enumerate(CONDITIONS)}
    ranked = sorted(records, key=lambda r: (r["benchmark"], r.get("recipe") or "", r.get("budget") or 0,
                                            order[r["condition"]]))  # fmt: skip
    for record in ranked:
        for name, result in (record.get("scorers") or {record.get("scorer", "?"): record}).items():
            attempted = ""
            if "attempted" in result:
                share = result.get("accuracy_attempted")
                attempted = (f"{pct(share)} of {result['attempted']}" if share is not None else "none") + (
                    f" ({result.get('unparseable', 0)} unparseable)"
                )
            where = " ".join(str(result[k]) for k in ("device", "dtype") if result.get(k))
            rows.append(
                [
                    record["benchmark"],
                    model_name(record),
                    record["condition"],
                    name,
                    cell(result, decimals),
                    pct(result["chance"]) if result.get("chance") is not None else "",
                    attempted,
                    where,
                ]
            )
    return rows


def summary(wins: Wins, benchmarks: int) -> list[str]:
    return [
        f"{recipe} beats RAG on {len(w['closed_book'])} of {benchmarks} benchmarks closed-book"
        f"{' (' + ', '.join(w['closed_book']) + ')' if w['closed_book'] else ''}, and on {len(w['rag'])} of "
        f"{benchmarks} with RAG{' (' + ', '.join(w['rag']) + ')' if w['rag'] else ''}."
        for recipe, w in wins.items()
    ]


def compute(generator: str, manifests: list[str], train_metrics: list[str]) -> dict[str, Any]:
    """C = 2MD (generating D synthetic tokens with an M-parameter generator) + 6ND (training an N-parameter
    student on D tokens), summed over benchmarks and budgets."""
    generator_params = parameter_count(generator)
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
    return [{**io.read_json(fit_path), "figure": figure} for fit_path, figure in zip(fits, figures, strict=True)]


def fit_lines(item: dict[str, Any]) -> list[str]:
    lines = []
    for recipe, by_condition in item.get("fits", {}).items():
        fit = by_condition.get("smt_closed_book")
        if not fit:
            lines.append(
                f"{item['benchmark']}, {recipe}: one budget only, no fit (list several in `mix.token_budgets`)."
            )
            continue
        match = fit["tokens_to_match_rag"]
        reach = f"reaches RAG (base) at about {match:.3g} tokens" if match else "does not rise towards RAG"
        lines.append(
            f"{item['benchmark']}, {recipe}: closed-book accuracy = {fit['a']:.3f} + {fit['b']:.4f} ln(tokens) "
            f"(R² {fit['r2']:.2f}, {100 * fit['per_doubling']:+.2f} points per doubling); {reach}."
        )
    return lines


HEADER = ["model", "closed-book", "with RAG", "gain over RAG (closed-book, points)", "gain over RAG (with RAG, points)"]
NOTE = (
    "Accuracy: percent, [95% bootstrap interval], (questions scored). Each recipe's model is the one trained on the "
    "largest token budget (the scaling figures show every budget; the table of trained models lists each); a gain is "
    "its accuracy (closed-book, or with RAG) minus the base model's with RAG, in points."
)


def md_table(header: list[str], rows: Table) -> list[str]:
    align = "|---|" + "---:|" * (len(header) - 1)
    return ["| " + " | ".join(header) + " |", align, *("| " + " | ".join(r) + " |" for r in rows)]


def markdown(
    found: dict[str, Table],
    lines: list[str],
    scorers: list[str],
    figures: list[dict[str, Any]],
    flops: dict,
    models: Table | None = None,
    by_scorer: Table | None = None,
) -> str:
    out = ["# Synthetic Mixed Training: results", "", NOTE, ""]
    for benchmark, rows in found.items():
        out += [f"## {benchmark}", "", *md_table(HEADER, rows), ""]
    out += ["## Summary", "", *(f"- {line}" for line in lines), ""]
    out += ["Scorer: " + "; ".join(f"{s} ({SCORER_NOTES.get(s, 'see smt/eval/scorers.py')})" for s in scorers) + "."]
    if models:
        out += ["", "## Every trained model against RAG (base)", "", *md_table(MODEL_HEADER, models)]
    if by_scorer:
        out += ["", "## Every scorer run", "", *md_table(SCORER_HEADER, by_scorer)]
    out += ["", "Conditions:", "", *(f"- **{c}**: {LEGEND[c]}" for c in CONDITIONS), "", "## Scaling", ""]
    for item in figures:
        rel = Path(item["figure"]).relative_to("results").as_posix()
        out += [f"![{item['benchmark']} scaling]({rel})", "", *fit_lines(item), ""]
    out += [
        "## Compute",
        "",
        f"C = 2MD + 6ND = {flops['total_flops']:.3g} FLOPs: generation {flops['generation_flops_2md']:.3g} "
        f"({flops['generated_tokens']} tokens from a {flops['generator_parameters'] / 1e6:.0f}M-parameter "
        f"generator), training {flops['training_flops_6nd']:.3g} ({flops['training_tokens']} tokens over "
        f"{flops['training_runs']} runs).",
    ]
    return "\n".join(out) + "\n"


def html_table(header: list[str], rows: Table) -> str:
    esc = html.escape
    head = "".join(f"<th>{esc(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{esc(c)}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def html_page(
    found: dict[str, Table],
    lines: list[str],
    figures: list[dict[str, Any]],
    flops: dict,
    models: Table | None = None,
    by_scorer: Table | None = None,
) -> str:
    """One self-contained page (figures inlined), for a browser or a CI artifact."""
    esc = html.escape
    sections = "".join(f"<h2>{esc(b)}</h2>{html_table(HEADER, rows)}" for b, rows in found.items())
    if models:
        sections += f"<h2>Every trained model against RAG (base)</h2>{html_table(MODEL_HEADER, models)}"
    if by_scorer:
        sections += f"<h2>Every scorer run</h2>{html_table(SCORER_HEADER, by_scorer)}"
    images = "".join(
        f"<h3>{esc(f['benchmark'])}</h3><img alt='scaling' src='data:image/png;base64,"
        f"{base64.b64encode(Path(f['figure']).read_bytes()).decode()}'>"
        + "".join(f"<p>{esc(line)}</p>" for line in fit_lines(f))
        for f in figures
    )
    return (
        "<!doctype html><html><head><meta charset='utf-8'><title>smt results</title><style>"
        "body{font-family:sans-serif;max-width:960px;margin:2em auto}table{border-collapse:collapse}"
        "td,th{border:1px solid #ccc;padding:4px 8px;text-align:right}td:first-child{text-align:left}</style>"
        f"</head><body><h1>Synthetic Mixed Training: results</h1><p>{esc(NOTE)}</p>{sections}"
        f"<h2>Summary</h2><ul>{''.join(f'<li>{esc(line)}</li>' for line in lines)}</ul><h2>Scaling</h2>{images}"
        f"<h2>Compute</h2><p>C = 2MD + 6ND = {flops['total_flops']:.3g} FLOPs "
        f"(generation {flops['generation_flops_2md']:.3g}, training {flops['training_flops_6nd']:.3g}).</p>"
        "</body></html>\n"
    )
