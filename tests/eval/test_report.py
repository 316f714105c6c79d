"""The results page as the paper reports it: per benchmark, base rows and one row per recipe with its gains over
RAG, a summary line per recipe counting the benchmarks on which it beats RAG, every trained model's gains, and
every scorer's accuracy with its interval."""

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
    assert demo[1][4] == "+5.0" and demo[2][4] == "+15.0"  # with RAG minus the base model's RAG
    assert demo[0][3:] == ["-25.0", ""]  # the base model closed-book against its own RAG
    assert tables["other"][1][1:] == ["n/a", "n/a", "n/a", "n/a"]  # smt has no score on `other`
    assert wins == {
        "smt": {"closed_book": [], "rag": ["demo"]},
        "smt_fr": {"closed_book": ["demo"], "rag": ["demo", "other"]},
    }
    lines = report.summary(wins, len(tables))
    assert lines[1] == "smt_fr beats RAG on 1 of 2 benchmarks closed-book (demo), and on 2 of 2 with RAG (demo, other)."


def test_every_trained_model_is_listed_with_its_gains_over_rag(tmp_path: Path) -> None:
    rows = report.model_rows(report.load_all(write_scores(tmp_path)), decimals=1)
    assert [r[:3] for r in rows] == [
        ["demo", "smt", "100"],  # the smaller budget too, which the main table leaves out
        ["demo", "smt", "400"],
        ["demo", "smt_fr", "400"],
        ["other", "smt_fr", "400"],
    ]
    assert rows[0][3:] == ["30.0% [20.0, 40.0] (n=40)", "-20.0", "n/a", "n/a"]  # no RAG score at that budget
    assert rows[1][4] == "-5.0" and rows[1][6] == "+5.0"
    assert rows[3][4] == "-20.0" and rows[3][6] == "+5.0"  # against `other`'s own RAG (70%)


def test_every_scorer_run_has_its_accuracy_interval_chance_and_attempted_share(tmp_path: Path) -> None:
    letter = {"accuracy": 0.3, "ci_low": 0.175, "ci_high": 0.45, "n": 40, "chance": 0.25, "device": "cpu",
              "dtype": "float32"}  # fmt: skip
    loglik = {"accuracy": 0.175, "ci_low": 0.075, "ci_high": 0.3, "n": 40, "chance": 0.25, "ties": 0}
    generate = {"accuracy": 0.2, "ci_low": 0.1, "ci_high": 0.325, "n": 40, "chance": 0.25, "unparseable": 24,
                "attempted": 16, "accuracy_attempted": 0.5, "device": "cuda:0", "dtype": "bfloat16"}  # fmt: skip
    record = {"benchmark": "demo", "recipe": "smt", "budget": 400, "condition": "smt_rag", "scorer": "letter",
              "scorers": {"letter": letter, "option_loglik": loglik, "generate": generate}, **letter}  # fmt: skip
    older = {"benchmark": "demo", "recipe": None, "budget": None, "condition": "rag_base", "scorer": "judge",
             "accuracy": 0.5, "ci_low": 0.4, "ci_high": 0.6, "n": 10}  # fmt: skip
    paths = []
    for n, r in enumerate([record, older]):
        paths.append(str(tmp_path / f"{n}.json"))
        Path(paths[-1]).write_text(json.dumps(r))
    rows = report.scorer_rows(report.load_all(paths), decimals=1)
    assert rows == [
        ["demo", "base", "rag_base", "judge", "50.0% [40.0, 60.0] (n=10)", "", "", ""],
        ["demo", "smt (400 tokens)", "smt_rag", "letter", "30.0% [17.5, 45.0] (n=40)", "25.0%", "", "cpu float32"],
        ["demo", "smt (400 tokens)", "smt_rag", "option_loglik", "17.5% [7.5, 30.0] (n=40)", "25.0%", "", ""],
        ["demo", "smt (400 tokens)", "smt_rag", "generate", "20.0% [10.0, 32.5] (n=40)", "25.0%",
         "50.0% of 16 (24 unparseable)", "cuda:0 bfloat16"],
    ]  # fmt: skip
    scores = report.largest_budget(report.load_all(paths))
    tables, _ = report.tables(scores, {"smt": {"qa": 1.0}}, decimals=1)
    page = report.markdown(tables, [], ["letter", "option_loglik", "generate"], [], FLOPS, [], rows)
    assert "## Every scorer run" in page and "| demo | smt (400 tokens) | smt_rag | generate |" in page
    assert "letter (the options listed with letters" in page and "option_loglik (each option's text" in page
    assert "<h2>Every scorer run</h2>" in report.html_page(tables, [], [], FLOPS, [], rows)


FLOPS = {"total_flops": 1.0, "generation_flops_2md": 0.5, "generated_tokens": 1, "generator_parameters": 1e6,
         "training_flops_6nd": 0.5, "training_tokens": 1, "training_runs": 1}  # fmt: skip
