"""The results page as the paper reports it: per benchmark, base rows and one row per recipe with its gain over
RAG, and a summary line per recipe counting the benchmarks on which it beats RAG."""

from __future__ import annotations

import json
from pathlib import Path

from smt.eval import report

RECIPES = {"smt": {"qa": 0.5, "active_reading": 0.5}, "smt_fr": {"qa": 0.5, "focal_rewrite": 0.5}}


def write_scores(folder: Path) -> list[str]:
    found = {
        ("demo", None, "closed_book_base", None): 0.25,
        ("demo", None, "rag_base", None): 0.5,
        ("demo", "smt", "smt_closed_book", 100): 0.3,  # a smaller budget: the table shows the largest
        ("demo", "smt", "smt_closed_book", 400): 0.45,
        ("demo", "smt", "smt_rag", 400): 0.55,
        ("demo", "smt_fr", "smt_closed_book", 400): 0.6,
        ("demo", "smt_fr", "smt_rag", 400): 0.65,
        ("other", None, "closed_book_base", None): 0.2,
        ("other", None, "rag_base", None): 0.7,
        ("other", "smt_fr", "smt_closed_book", 400): 0.5,
        ("other", "smt_fr", "smt_rag", 400): 0.75,
    }
    paths = []
    for n, ((benchmark, recipe, condition, budget), accuracy) in enumerate(found.items()):
        record = {"benchmark": benchmark, "recipe": recipe, "condition": condition, "budget": budget, "n": 40,
                  "accuracy": accuracy, "ci_low": accuracy - 0.1, "ci_high": accuracy + 0.1}  # fmt: skip
        paths.append(str(folder / f"{n}.json"))
        Path(paths[-1]).write_text(json.dumps(record))
    return paths


def test_rows_per_recipe_with_the_gain_over_rag_and_the_summary(tmp_path: Path) -> None:
    scores = report.load_scores(write_scores(tmp_path))
    tables, wins = report.tables(scores, RECIPES, decimals=1)
    demo = tables["demo"]
    assert [row[0].split(" ")[0] for row in demo] == ["base", "smt", "smt_fr"]
    assert demo[0][1:3] == ["25.0% [15.0, 35.0] (n=40)", "50.0% [40.0, 60.0] (n=40)"]
    assert demo[1][0] == "smt (qa 0.5, active_reading 0.5; 400 tokens)" and demo[1][1].startswith("45.0%")
    assert demo[1][3] == "-5.0" and demo[2][3] == "+10.0"  # closed-book minus the base model's RAG
    assert tables["other"][1][1:] == ["n/a", "n/a", "n/a"]  # smt has no score on `other`
    assert wins == {
        "smt": {"closed_book": [], "rag": ["demo"]},
        "smt_fr": {"closed_book": ["demo"], "rag": ["demo", "other"]},
    }
    lines = report.summary(wins, len(tables))
    assert lines[1] == "smt_fr beats RAG on 1 of 2 benchmarks closed-book (demo), and on 2 of 2 with RAG (demo, other)."
