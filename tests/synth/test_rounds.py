"""Generation sized to a token target, on the embedded model: rounds per document until each holds its share,
records independent of how documents are grouped into shards, and strategy lists refreshed every N items."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import pytest
from helpers import ROOT

from smt.synth import rounds
from smt.synth.backends.transformers import TransformersBackend
from smt.synth.generation import Completion, Request, Sampling
from smt.synth.generators import active_reading, qa
from smt.synth.job import Job

# Two demo documents cut short: the rounds, not the reading, are under test, and prompts stay cheap on a CPU.
DOCUMENTS = [
    {**doc, "text": doc["text"][:700]}
    for doc in map(json.loads, (ROOT / "smt/benchmarks/demo/documents.jsonl").open().readlines()[:2])
]


@pytest.fixture(scope="module")
def complete(base_model: Path) -> Any:
    backend = TransformersBackend(str(base_model), dtype="float32", batch_size=8)

    def run(requests: list[Request], sampling: Sampling, step: str) -> list[Completion]:
        return backend.generate(requests, sampling, desc=step, progress=False)

    return run


def qa_job(complete: Any, documents: list[dict], target: int) -> Job:
    return Job(
        documents=documents,
        seed=7,
        options={"per_request": 2, "per_document": 1},
        temperature=1.0,
        top_p=1.0,
        max_new_tokens=32,
        complete=complete,
        target_per_document=target,
        max_rounds=3,
    )


def test_rounds_reach_each_documents_target_and_do_not_depend_on_the_grouping(complete: Any) -> None:
    together = qa.produce(qa_job(complete, DOCUMENTS, target=60))
    counts = together.counts
    assert counts["rounds"] >= 2, "a 32-token request cannot hold a 60-token share: a second round must follow"
    assert counts["target_tokens_per_document"] == 60
    assert counts["documents_short_of_target"] == 0 or counts["rounds"] == 3, "short only when the rounds ran out"
    assert together.requested == len(together.records) + len(together.rejected)
    apart = [qa.produce(qa_job(complete, [doc], target=60)) for doc in DOCUMENTS]  # one shard per document
    assert sorted(r["id"] for o in apart for r in o.records) == sorted(r["id"] for r in together.records)
    assert [r for o in apart for r in o.records] == sorted(together.records, key=lambda r: r["doc_id"])


def test_no_target_means_one_round(complete: Any) -> None:
    outcome = qa.produce(qa_job(complete, DOCUMENTS[:1], target=0))
    assert outcome.counts["rounds"] == 1 and outcome.requested == 2  # one request of two pairs


def test_a_fresh_strategy_list_every_n_items(complete: Any) -> None:
    job = Job(
        documents=DOCUMENTS[:1],
        seed=3,
        options={"per_document": 4, "strategies_max_new_tokens": 48, "strategies_every": 2},
        temperature=0.7,
        top_p=0.95,
        max_new_tokens=16,
        complete=complete,
    )
    outcome = active_reading.produce(job)
    assert outcome.counts["strategy_lists"] == 2, "items 0-1 use list 0, items 2-3 list 1"
    assert outcome.counts["max_strategy_reuse"] <= 2
    keys = {r["id"] for r in [*outcome.records, *outcome.rejected]}
    assert keys == {f"{DOCUMENTS[0]['doc_id']}/active_reading/{i}" for i in range(4)}
    again = active_reading.produce(dataclasses.replace(job))
    assert again.records == outcome.records


def test_a_qa_completion_counts_the_tokens_of_the_pairs_it_kept() -> None:
    """One long pair where three were asked: the rounds must count most of the completion, not a third of it."""
    text = "Question: Who lit the twelve lamps on the cliff?\nAnswer: Nadia lit them, on the night of the storm."
    completion = Completion("d/qa/0", text, "stop", 100, 30)
    kept = len("Who lit the twelve lamps on the cliff?") + len("Nadia lit them, on the night of the storm.")
    assert 20 <= qa.accepted_tokens(completion, kept) <= 30
    assert qa.accepted_tokens(completion, 0) == 0
    assert qa.accepted_tokens(Completion("d/qa/1", "", "error", 100, 0), 0) == 0


@pytest.mark.parametrize(
    ("made", "asked", "round_number", "expected"),
    [
        (0, 0, 1, 3),  # the first round: `first` items
        (300, 3, 2, 2),  # 100 tokens per item, 140 to go: two more
        (10, 3, 2, 3),  # one short item accepted of three: the rate says 43 more, the cap says at most 3
        (20, 6, 3, 6),  # the cap grows with what was asked
        (0, 3, 2, 6),  # nothing accepted: twice the last round's ask
        (0, 9, 3, 12),
    ],
)
def test_a_later_round_asks_what_the_rate_says_but_at_most_doubles(
    made: int, asked: int, round_number: int, expected: int
) -> None:
    assert rounds.ask(target=440, made=made, asked=asked, first=3, round_number=round_number) == expected
