"""The evaluation stage as both schedulers run it, on the embedded default model: the generation scorer on
multiple choice with the other scorers beside it, and free-form answers graded by the judge with the numeric
check (FinanceBench questions)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from helpers import SHARED_DATA, make_workspace, sh

from smt.inference import cpu_bf16_tiles

GENERATE = {"eval": {"scorer": "generate", "max_questions": 3, "max_new_tokens": 24, "bootstrap_resamples": 200}}
BESIDE = ["letter", "option_loglik"]


def workspace_with_model(tmp_path: Path, base_model: Path, changes: dict) -> Path:
    ws = make_workspace(tmp_path, changes)
    shutil.copytree(base_model, ws / "results/models/base/smollm2")
    return ws


def test_generation_scorer_parses_or_counts_every_answer(tmp_path: Path, base_model: Path) -> None:
    ws = workspace_with_model(tmp_path, base_model, {"eval": {**GENERATE["eval"], "extra_scorers": BESIDE}})
    sh("python -m smt ingest --benchmark demo && python -m smt eval_closed_book_base --benchmark demo", ws)
    score = json.loads((ws / "results/scores/demo/closed_book_base.json").read_text())
    records = [json.loads(line) for line in (ws / "results/scores/demo/closed_book_base.predictions.jsonl").open()]
    assert score["scorer"] == "generate" and score["n"] == 3 and len(records) == 3 * 3
    assert set(score["prompts"]) == {"mc_cot", "shots"} and score["shots"] == 2 and score["temperature"] == 0.0
    cpu_dtype = "bfloat16" if cpu_bf16_tiles() else "float32"  # generated answers: the backend's CPU dtype
    assert score["device"] == "cpu" and score["dtype"] == cpu_dtype
    assert score["chance"] == 0.25
    assert list(score["scorers"]) == ["generate", *BESIDE]
    prompt_names = {"letter": {"mc_letter"}, "option_loglik": {"option_loglik", "option_loglik_context"}}
    for name in BESIDE:
        beside = score["scorers"][name]
        assert set(beside["prompts"]) == prompt_names[name] and beside["n"] == 3 and beside["device"] == "cpu"
        assert beside["ci_low"] <= beside["accuracy"] <= beside["ci_high"]
        mine = [r for r in records if r["scorer"] == name]
        assert beside["correct"] == sum(r["correct"] for r in mine) and all(len(r["scores"]) == 4 for r in mine)
    records = [r for r in records if r["scorer"] == "generate"]
    attempted = [r for r in records if not r["unparseable"]]
    assert score["attempted"] == len(attempted)
    if attempted:
        assert score["accuracy_attempted"] == sum(r["correct"] for r in attempted) / len(attempted)
    for r in records:
        assert r["output"].startswith("Thought process:")
        assert (r["predicted"] is None) == r["unparseable"]
        assert r["correct"] == (r["predicted"] == r["gold"])
    assert score["unparseable"] == sum(r["unparseable"] for r in records)
    assert score["correct"] == sum(r["correct"] for r in records)
    assert score["ci_low"] <= score["accuracy"] <= score["ci_high"]


@pytest.mark.skipif(not SHARED_DATA.is_dir(), reason=f"shared benchmark data not found at {SHARED_DATA}")
def test_free_form_answers_are_judged_and_numbers_checked(tmp_path: Path, base_model: Path) -> None:
    source = tmp_path / "fb"
    source.mkdir()
    for name in ("financebench_open_source.jsonl", "financebench_document_information.jsonl"):
        (source / name).symlink_to(SHARED_DATA / "financebench" / name)
    changes = {
        "benchmarks": {"financebench": {"source": str(source), "corpus": "all"}},
        "eval": {**GENERATE["eval"], "scorer": "letter"},  # free-form questions are judged whatever the scorer
    }
    ws = workspace_with_model(tmp_path / "ws", base_model, changes)
    sh("python -m smt ingest --benchmark financebench", ws)
    sh("python -m smt eval_closed_book_base --benchmark financebench", ws)
    score = json.loads((ws / "results/scores/financebench/closed_book_base.json").read_text())
    path = ws / "results/scores/financebench/closed_book_base.predictions.jsonl"
    records = [json.loads(line) for line in path.open()]
    assert score["scorer"] == "judge" and score["n"] == 3
    assert set(score["prompts"]) == {"free_form_answer", "judge"}
    assert score["judge_model"]["path"] == "results/models/base/smollm2"
    # No PDF in this source: every question is kept, with its status, and scored.
    assert score["by_status"]["missing_document"]["n"] == 3
    for r in records:
        assert r["status"] == "missing_document" and r["answer"] and r["verdict"].startswith("Verdict:")
        assert r["correct"] == (not r["unparseable"] and "incorrect" not in r["verdict"].lower())
    assert score["numeric_questions"] == sum(r["numeric_match"] is not None for r in records)


def test_scaling_stage_fits_the_sweep_per_recipe_on_unique_tokens(tmp_path: Path) -> None:
    """Score files for three budgets of two recipes on known lines a + b ln(unique tokens): the stage recovers
    a and b per recipe, finds where each line meets the RAG score, and writes the DVC plot data and the PNG."""
    import math

    budgets = {1000: 900, 4000: 3900, 16000: 15800}  # budget -> unique synthetic tokens in its mix
    lines = {"smt": (0.05, 0.04), "smt_fr": (0.1, 0.03)}
    ws = make_workspace(tmp_path, {"mix": {"token_budgets": list(budgets)}})

    def score(condition: str, recipe: str | None, budget: int | None, accuracy: float) -> dict:
        return {"condition": condition, "benchmark": "demo", "recipe": recipe, "budget": budget,
                "accuracy": accuracy, "ci_low": accuracy - 0.05, "ci_high": accuracy + 0.05, "n": 40}  # fmt: skip

    for recipe, (a, b) in lines.items():
        for budget, tokens in budgets.items():
            folder = ws / f"results/mix/demo/{recipe}/{budget}"
            folder.mkdir(parents=True)
            mix = {"recipe": recipe, "token_budget": budget, "unique_synthetic_tokens": tokens}
            (folder / "mix_report.json").write_text(json.dumps({**mix, "synthetic_tokens": 2 * tokens}))
            (ws / f"results/scores/demo/{recipe}/{budget}").mkdir(parents=True)
            for condition, offset in (("smt_closed_book", 0.0), ("smt_rag", 0.1)):
                record = score(condition, recipe, budget, a + offset + b * math.log(tokens))
                (ws / f"results/scores/demo/{recipe}/{budget}/{condition}.json").write_text(json.dumps(record))
    (ws / "results/scores/demo/rag_base.json").write_text(json.dumps(score("rag_base", None, None, 0.4)))
    sh("python -m smt scaling --benchmark demo", ws)
    fits = json.loads((ws / "results/scaling/demo/scaling.json").read_text())["fits"]
    for recipe, (a, b) in lines.items():
        closed = fits[recipe]["smt_closed_book"]
        assert closed["a"] == pytest.approx(a) and closed["b"] == pytest.approx(b) and closed["r2"] == pytest.approx(1)
        assert closed["tokens_to_match_rag"] == pytest.approx(math.exp((0.4 - a) / b))
        assert fits[recipe]["smt_rag"]["a"] == pytest.approx(a + 0.1)
    rows = (ws / "results/scaling/demo/points.csv").read_text().splitlines()
    assert rows[0].startswith("recipe,condition,budget,synthetic_tokens,accuracy")
    assert len(rows) == 1 + 2 * len(budgets) * len(lines)
    assert (ws / "results/scaling/demo/scaling.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
