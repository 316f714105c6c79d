"""The run's numbers as one flat DVC metrics file (results/metrics.json): what a person compares across runs.

DVC shows every leaf of every metrics file as a column of `dvc exp show`, so this file holds few numbers and no
provenance, versions or per-item detail (those stay in the stage outputs it reads). Names are short and unique
across the file, so DVC never prefixes them with the file path, and they do not contain the token budget: an
experiment that changes the budget fills the same columns as the baseline, and sorting by a score compares them.

Names, per benchmark `b`:
- `b.<model>.<condition>`: accuracy; `_lo` / `_hi` suffixed: its 95% bootstrap interval. `<model>` is `base` or a
  recipe (its model trained on the largest budget, as in the report); `<condition>` is `cb` (closed-book) or `rag`:
  names short enough that every accuracy of the embedded default fits a 160-column `dvc exp show`.
- `b.n` (questions scored), `b.documents`, `b.recall` (gold document among the kept chunks), `b.evidence_recall`
  (where the benchmark locates its evidence), `b.contamination` (largest n-gram overlap of a synthetic item with a
  question).
- `b.<recipe>.loss` (last logged training loss), `b.<recipe>.tokens` (unique synthetic tokens in its mix), and with
  several budgets `b.<recipe>.per_doubling` (closed-book accuracy gained per doubling of tokens) and
  `b.<recipe>.tokens_to_rag` (where the fit reaches the base model with RAG).
- `b.synth.<stream>.tokens`, `.vendi` (semantic diversity), `.distinct_4grams` (lexical diversity).
- `compute.flops` (C = 2MD + 6ND), `compute.generation_flops`, `compute.training_flops`, `compute.generated_tokens`.
"""

from __future__ import annotations

from typing import Any

CONDITION_KEYS = {
    "closed_book_base": ("base", "cb"),
    "rag_base": ("base", "rag"),
    "smt_closed_book": (None, "cb"),
    "smt_rag": (None, "rag"),
}
# Names a recipe may not take: they are the base model's entry and the per-benchmark groups beside the recipes.
RESERVED = ("base", "synth", "n", "documents", "recall", "evidence_recall", "contamination")


def _check_recipe(recipe: str, source: str) -> None:
    if recipe in RESERVED:
        raise ValueError(
            f"{source}: recipe {recipe!r} takes a name results/metrics.json uses for something else "
            f"({', '.join(RESERVED)}); rename it under `recipes` in params.yaml"
        )


def headline_scores(scores: list[dict[str, Any]]) -> dict[tuple[str, str, str], dict[str, Any]]:
    """(benchmark, model, condition) -> score record, each recipe's at its largest budget."""
    found: dict[tuple[str, str, str], dict[str, Any]] = {}
    for record in scores:
        if record.get("condition") not in CONDITION_KEYS:
            raise ValueError(f"score record {record.get('benchmark')}: unknown condition {record.get('condition')!r}")
        model, condition = CONDITION_KEYS[record["condition"]]
        if model is None:
            model = record["recipe"]
            _check_recipe(model, f"score {record['benchmark']}/{model}/{record['condition']}")
        key = (record["benchmark"], model, condition)
        if key not in found or (record.get("budget") or 0) > (found[key].get("budget") or 0):
            found[key] = record
    return found


def _put(tree: dict[str, Any], dotted: str, value: Any) -> None:
    *parents, last = dotted.split(".")
    for part in parents:
        tree = tree.setdefault(part, {})
    tree[last] = value


def _rounded(value: float | None, digits: int = 4) -> float | None:
    return None if value is None else round(float(value), digits)


def score_metrics(tree: dict[str, Any], scores: list[dict[str, Any]]) -> None:
    headline = headline_scores(scores)
    counts: dict[str, set[int]] = {}
    for (benchmark, model, condition), record in sorted(headline.items()):
        _put(tree, f"{benchmark}.{model}.{condition}", _rounded(record["accuracy"]))
        _put(tree, f"{benchmark}.{model}.{condition}_lo", _rounded(record["ci_low"]))
        _put(tree, f"{benchmark}.{model}.{condition}_hi", _rounded(record["ci_high"]))
        counts.setdefault(benchmark, set()).add(int(record["n"]))
    for benchmark, ns in counts.items():
        if len(ns) == 1:
            _put(tree, f"{benchmark}.n", ns.pop())
        else:  # the conditions scored different questions: each says how many
            for (b, model, condition), record in headline.items():
                if b == benchmark:
                    _put(tree, f"{benchmark}.{model}.{condition}_n", int(record["n"]))


def benchmark_metrics(
    tree: dict[str, Any],
    benchmark: str,
    ingest: dict[str, Any],
    retrieval: dict[str, Any],
    contamination: dict[str, Any],
    audit: dict[str, Any],
) -> None:
    """Corpus size, retrieval recall, contamination and the synthetic streams' tokens and diversity."""
    _put(tree, f"{benchmark}.documents", int(ingest["documents"]))
    _put(tree, f"{benchmark}.recall", _rounded(retrieval.get("document_recall")))
    if retrieval.get("evidence_recall") is not None:
        _put(tree, f"{benchmark}.evidence_recall", _rounded(retrieval["evidence_recall"]))
    _put(tree, f"{benchmark}.contamination", _rounded(contamination["max"]))
    for stream in sorted(audit["tokens"]):
        _put(tree, f"{benchmark}.synth.{stream}.tokens", int(audit["tokens"][stream]))
        _put(tree, f"{benchmark}.synth.{stream}.vendi", _rounded(audit["vendi"][stream]))
        _put(tree, f"{benchmark}.synth.{stream}.distinct_4grams", _rounded(audit["unique_4gram_ratio"][stream]))


def recipe_metrics(
    tree: dict[str, Any],
    runs: dict[tuple[str, str, int], tuple[dict[str, Any], dict[str, Any]]],
    fits: dict[str, dict[str, Any]],
) -> None:
    """Per recipe at its largest budget: last training loss and unique synthetic tokens; with several budgets,
    the closed-book fit's gain per doubling and where it reaches RAG. `runs`: (benchmark, recipe, budget) ->
    (mix report, train metrics); `fits`: benchmark -> the scaling stage's fit file."""
    largest: dict[tuple[str, str], int] = {}
    for benchmark, recipe, budget in runs:
        _check_recipe(recipe, f"mix {benchmark}/{recipe}/{budget}")
        largest[(benchmark, recipe)] = max(budget, largest.get((benchmark, recipe), budget))
    for (benchmark, recipe), budget in sorted(largest.items()):
        mix, train = runs[(benchmark, recipe, budget)]
        _put(tree, f"{benchmark}.{recipe}.loss", _rounded(train.get("last_loss")))
        _put(tree, f"{benchmark}.{recipe}.tokens", int(mix["unique_synthetic_tokens"]))
        fit = ((fits.get(benchmark) or {}).get("fits", {}).get(recipe) or {}).get("smt_closed_book")
        if fit:
            _put(tree, f"{benchmark}.{recipe}.per_doubling", _rounded(fit["per_doubling"]))
            reach = fit.get("tokens_to_match_rag")
            _put(tree, f"{benchmark}.{recipe}.tokens_to_rag", None if reach is None else float(f"{reach:.4g}"))


def compute_metrics(tree: dict[str, Any], compute: dict[str, Any]) -> None:
    """C = 2MD + 6ND over the whole run (the report's compute.json)."""
    _put(tree, "compute.flops", compute.get("total_flops"))
    _put(tree, "compute.generation_flops", compute.get("generation_flops_2md"))
    _put(tree, "compute.training_flops", compute.get("training_flops_6nd"))
    _put(tree, "compute.generated_tokens", compute.get("generated_tokens"))
