"""results/metrics.json on hand-made stage outputs: few flat numbers with unique short names, each recipe at its
largest budget, no provenance; a recipe named like one of the file's own groups is refused by name."""

from __future__ import annotations

from typing import Any

import pytest

from smt.eval import summary


def score(condition: str, accuracy: float, recipe: str | None = None, budget: int | None = None, n: int = 40) -> dict:
    return {
        "benchmark": "demo",
        "condition": condition,
        "recipe": recipe,
        "budget": budget,
        "accuracy": accuracy,
        "ci_low": accuracy - 0.1,
        "ci_high": accuracy + 0.1,
        "n": n,
        "provenance": {"versions": {"torch": "2.13.0"}},  # never copied into the metrics
    }


def leaves(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """The column names DVC makes of a metrics file (nested keys joined with dots) and their values."""
    found: dict[str, Any] = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            found.update(leaves(value, f"{prefix}{key}."))
        else:
            found[f"{prefix}{key}"] = value
    return found


def built(budgets: tuple[int, ...] = (4000,)) -> dict[str, Any]:
    tree: dict[str, Any] = {}
    scores = [score("closed_book_base", 0.175), score("rag_base", 0.65)]
    for budget in budgets:
        scores += [score("smt_closed_book", 0.1 + budget / 1e5, "smt", budget), score("smt_rag", 0.6, "smt", budget)]
    summary.score_metrics(tree, scores)
    audit = {
        "tokens": {"qa": 2200, "active_reading": 2100},
        "vendi": {"qa": 3.21234, "active_reading": 2.5},
        "unique_4gram_ratio": {"qa": 0.9, "active_reading": 0.8},
    }
    summary.benchmark_metrics(
        tree, "demo", {"documents": 5}, {"document_recall": 0.95, "evidence_recall": None}, {"max": 0.02}, audit
    )
    runs = {("demo", "smt", b): ({"unique_synthetic_tokens": b + 12}, {"last_loss": 2.5 - b / 1e5}) for b in budgets}
    fit = {"per_doubling": 0.021, "tokens_to_match_rag": 123456.7} if len(budgets) > 1 else None
    summary.recipe_metrics(tree, runs, {"demo": {"fits": {"smt": {"smt_closed_book": fit}}}})
    summary.compute_metrics(tree, {"total_flops": 3e12, "generation_flops_2md": 2e12, "training_flops_6nd": 1e12,
                                   "generated_tokens": 9000, "provenance": {}})  # fmt: skip
    return tree


def test_one_budget_gives_each_condition_with_its_interval_and_the_summaries_beside_it() -> None:
    columns = leaves(built())
    assert columns == {
        "demo.base.cb": 0.175, "demo.base.cb_lo": 0.075, "demo.base.cb_hi": 0.275,
        "demo.base.rag": 0.65, "demo.base.rag_lo": 0.55, "demo.base.rag_hi": 0.75,
        "demo.smt.cb": 0.14, "demo.smt.cb_lo": 0.04, "demo.smt.cb_hi": 0.24,
        "demo.smt.rag": 0.6, "demo.smt.rag_lo": 0.5, "demo.smt.rag_hi": 0.7,
        "demo.n": 40, "demo.documents": 5, "demo.recall": 0.95, "demo.contamination": 0.02,
        "demo.synth.active_reading.tokens": 2100, "demo.synth.active_reading.vendi": 2.5,
        "demo.synth.active_reading.distinct_4grams": 0.8,
        "demo.synth.qa.tokens": 2200, "demo.synth.qa.vendi": 3.2123, "demo.synth.qa.distinct_4grams": 0.9,
        "demo.smt.loss": 2.46, "demo.smt.tokens": 4012,
        "compute.flops": 3e12, "compute.generation_flops": 2e12, "compute.training_flops": 1e12,
        "compute.generated_tokens": 9000,
    }  # fmt: skip
    assert list(columns)[:3] == ["demo.base.cb", "demo.base.cb_lo", "demo.base.cb_hi"]


def test_several_budgets_keep_the_largest_and_add_the_fit_under_the_same_names() -> None:
    columns = leaves(built((4000, 16000, 8000)))
    assert columns["demo.smt.cb"] == 0.26 and columns["demo.smt.tokens"] == 16012  # the 16000 model
    assert columns["demo.smt.per_doubling"] == 0.021 and columns["demo.smt.tokens_to_rag"] == 123500.0
    assert not [name for name in columns if "4000" in name or "16000" in name]


def test_conditions_that_scored_different_questions_each_say_how_many() -> None:
    tree: dict[str, Any] = {}
    summary.score_metrics(tree, [score("closed_book_base", 0.2, n=40), score("rag_base", 0.5, n=38)])
    columns = leaves(tree)
    assert "demo.n" not in columns
    assert columns["demo.base.cb_n"] == 40 and columns["demo.base.rag_n"] == 38


@pytest.mark.parametrize("recipe", ["base", "synth", "recall"])
def test_a_recipe_named_like_a_group_of_the_file_is_refused_by_name(recipe: str) -> None:
    with pytest.raises(ValueError, match=rf"recipe '{recipe}' takes a name results/metrics.json uses"):
        summary.score_metrics({}, [score("smt_closed_book", 0.2, recipe, 4000)])


def test_an_unknown_condition_is_named() -> None:
    with pytest.raises(ValueError, match="unknown condition 'smt_closed'"):
        summary.score_metrics({}, [score("smt_closed", 0.2, "smt", 4000)])
