"""Audits of the synthetic data: diversity measures, and the contamination check that stops the mix."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from helpers import make_workspace

from smt import io
from smt.pipeline.runner import run_stage
from smt.synth import contamination, diversity
from smt.synth.contamination import ContaminationError

QUESTIONS = [
    {
        "question_id": "q1",
        "question": "Which harbour festival did the widow Mara Voss found in the spring?",
        "options": [],
    },
    {"question_id": "q2", "question": "When?", "options": ["the harbour bell was recast in bronze for the fleet"]},
    {"question_id": "q3", "question": "Who lit the lamp of the old northern lighthouse first?", "options": []},
]
DOCUMENTS = ["Who lit the lamp of the old northern lighthouse first? Nobody knows. Mara Voss founded a festival."]


def test_unique_ngram_ratio() -> None:
    assert diversity.unique_ngram_ratio(["a b c d e"]) == 1.0
    assert diversity.unique_ngram_ratio(["a b c d", "a b c d"]) == 0.5
    assert diversity.unique_ngram_ratio(["too short"]) == 0.0


def test_vendi_score_counts_effectively_distinct_items() -> None:
    assert diversity.vendi_score(np.ones((5, 3))) == pytest.approx(1.0)
    assert diversity.vendi_score(np.eye(4)) == pytest.approx(4.0)
    two_clusters = np.array([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0], [0.0, 1.0]])
    assert diversity.vendi_score(two_clusters) == pytest.approx(2.0)


def test_contamination_ignores_ngrams_the_documents_contain() -> None:
    index = contamination.Index(QUESTIONS, DOCUMENTS, n=4)
    assert index.unchecked == 1, "q3 is quoted from a document: nothing of it is checkable"
    copied = "As everyone asks: which harbour festival did the widow Mara Voss found in the spring?"
    hit = index.check(copied)
    assert (hit.question_id, hit.overlap) == ("q1", 1.0)
    option = index.check("Then the harbour bell was recast in bronze for the fleet, they say.")
    assert option.question_id == "q2" and option.overlap == 1.0
    assert index.check("Who lit the lamp of the old northern lighthouse first?").overlap == 0.0
    assert index.check("Nothing in common at all here.") == contamination.Hit(0.0, None)


@pytest.fixture()
def audit_ws(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    ws = make_workspace(tmp_path, {"ingest": {"max_documents": 2}})
    monkeypatch.chdir(ws)
    run_stage("ingest", {"benchmark": "demo"})
    return ws


def _write_streams(ws: Path, qa_question: str) -> None:
    io.write_jsonl(
        ws / "results/synth/demo/qa.jsonl",
        [{"id": "demo-01/qa/0", "doc_id": "demo-01", "question": qa_question, "answer": "In 1847."}],
    )
    for generator in ("active_reading", "focal_rewrite"):
        text = f"A {generator} text about the harbour town, its people and its history, written for study."
        io.write_jsonl(
            ws / f"results/synth/demo/docs/{generator}.jsonl",
            [{"id": f"demo-01/{generator}/0", "doc_id": "demo-01", "generator": generator, "text": text}],
        )


def test_contamination_stage_passes_clean_data_and_stops_a_copied_question(audit_ws: Path) -> None:
    _write_streams(audit_ws, "What colour was the festival's first lantern?")
    run_stage("synth_contamination", {"benchmark": "demo"})
    report = io.read_json(audit_ws / "results/synth/demo/contamination.json")
    assert report["items"] == 3 and report["items_over_threshold"] == 0 and report["ngram"] == 8
    assert set(report["streams"]) == {"qa", "active_reading", "focal_rewrite"}
    question = pl.read_parquet(audit_ws / "results/data/demo/questions.parquet").sort("question_id").row(0, named=True)
    _write_streams(audit_ws, question["question"] + " " + " ".join(question["options"]))
    os.remove(audit_ws / "results/synth/demo/contamination.json")
    with pytest.raises(ContaminationError, match=rf"synthetic item demo-01/qa/0 \(qa\) .* {question['question_id']}"):
        run_stage("synth_contamination", {"benchmark": "demo"})
    assert not (audit_ws / "results/synth/demo/contamination.json").exists(), "a failed check leaves no metric"


def test_audit_stage_measures_every_stream(audit_ws: Path, base_model: Path) -> None:
    (audit_ws / "results/models/base").mkdir(parents=True)
    (audit_ws / "results/models/base/smollm2").symlink_to(base_model)
    _write_streams(audit_ws, "What colour was the festival's first lantern?")
    run_stage("synth_audit", {"benchmark": "demo"})
    report = io.read_json(audit_ws / "results/synth/demo/audit.json")
    streams = {"qa", "active_reading", "focal_rewrite"}
    assert set(report["tokens"]) == set(report["vendi"]) == set(report["unique_4gram_ratio"]) == streams
    assert all(report["tokens"][s] > 5 for s in streams)
    assert report["tokens_by_stream"]["docs"] == report["tokens"]["active_reading"] + report["tokens"]["focal_rewrite"]
    assert all(report["vendi"][s] == pytest.approx(1.0, abs=1e-3) for s in streams), "one item each: one effective item"
    assert report["unique_4gram_ratio"]["active_reading"] == 1.0
