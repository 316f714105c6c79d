"""Mixing: token targets met within one item, ratio and replay share as configured, deterministic."""

from __future__ import annotations

import random
from pathlib import Path

import polars as pl
import pytest

from smt.train.mixing import mix, qa_item, replay_passages, take, targets


def items(n: int, tokens: int) -> list[dict]:
    return [{"id": f"i{k}", "tokens": tokens} for k in range(n)]


def test_take_reaches_target_within_one_item_and_counts_repeated_tokens() -> None:
    chosen, repeated = take(items(10, 37), 1000, random.Random(0))
    total = sum(i["tokens"] for i in chosen)
    assert 1000 <= total < 1000 + 37
    assert repeated == total - 370  # 10 items x 37 tokens = 370 unique, the rest are repeats


def test_take_is_deterministic_and_seed_dependent() -> None:
    a, _ = take(items(20, 5), 60, random.Random(1))
    b, _ = take(items(20, 5), 60, random.Random(1))
    c, _ = take(items(20, 5), 60, random.Random(2))
    assert [i["id"] for i in a] == [i["id"] for i in b] != [i["id"] for i in c]


def test_take_nothing() -> None:
    assert take([], 100, random.Random(0)) == ([], 0)
    assert take(items(3, 5), 0, random.Random(0)) == ([], 0)


def stream(prefix: str, n: int, tokens: int, docs: int = 3, **extra: str) -> list[dict]:
    return [
        {"id": f"{prefix}{k}", "doc_id": f"d{k % docs}" if docs else None, "tokens": tokens + k % 7, **extra}
        for k in range(n)
    ]


STREAMS = {
    "qa": stream("q", 120, 40, generator="qa"),
    "active_reading": stream("a", 20, 300, generator="active_reading"),
    "focal_rewrite": stream("f", 20, 250, generator="focal_rewrite"),
    "replay": stream("r", 30, 120, docs=0),
}
SMT = {"qa": 0.5, "active_reading": 0.5}


@pytest.mark.parametrize(
    ("budget", "shares", "replay"),
    [(4000, SMT, 0.1), (4000, {"qa": 0.2, "focal_rewrite": 0.8}, 0.25), (3000, {"qa": 1.0}, 0.0)],
)
def test_mix_meets_each_streams_share_and_replay_within_one_item(budget: int, shares: dict, replay: float) -> None:
    mixed, report = mix(STREAMS, budget, shares, replay, seed=7)
    largest = {name: max(i["tokens"] for i in items) for name, items in STREAMS.items()}
    goal = targets(budget, shares, replay)
    assert sum(goal[n] for n in shares) == budget and set(report["tokens"]) == {*shares, "replay"}
    for name in (*shares, "replay"):
        got = sum(i["tokens"] for i in mixed if i["stream"] == name)
        assert got == report["tokens"][name] == report["unique_tokens"][name] + report["repeated_tokens"][name]
        assert goal[name] <= got < goal[name] + largest[name] or goal[name] == got == 0
    assert budget <= report["synthetic_tokens"] < budget + sum(largest[n] for n in shares)
    for name, share in shares.items():
        assert abs(report["shares_actual"][name] - share) <= max(largest[n] for n in shares) / budget
    assert abs(report["replay_fraction_actual"] - replay) <= largest["replay"] / report["total_tokens"]
    assert report["total_tokens"] == sum(i["tokens"] for i in mixed)
    assert report["unique_synthetic_tokens"] == report["synthetic_tokens"]  # every stream holds its target


def test_mix_is_deterministic_and_reports_documents_and_generators() -> None:
    a, report = mix(STREAMS, 4000, SMT, 0.1, seed=3)
    b, _ = mix(STREAMS, 4000, SMT, 0.1, seed=3)
    c, _ = mix(STREAMS, 4000, SMT, 0.1, seed=4)
    assert [i["id"] for i in a] == [i["id"] for i in b] != [i["id"] for i in c]
    assert {i["stream"] for i in a[:20]} == {"qa", "active_reading", "replay"}  # shuffled, not stream by stream
    assert report["tokens_per_generator"] == {
        g: sum(i["tokens"] for i in a if i.get("generator") == g) for g in ("active_reading", "qa")
    }
    by_doc = report["tokens_per_document"]
    assert sorted(by_doc) == ["d0", "d1", "d2"]
    assert sum(by_doc.values()) == report["synthetic_tokens"]  # replay has no document
    assert not any(i["stream"] == "focal_rewrite" for i in a), "a recipe mixes only its own streams"


def test_a_stream_short_of_its_target_fails_naming_it_unless_repeats_are_allowed() -> None:
    short = {**STREAMS, "active_reading": stream("a", 3, 300, generator="active_reading")}
    with pytest.raises(ValueError, match=r"stream 'active_reading' holds 903 unique tokens but its target is 2000 "
                                         r"\(shortfall 1097\).*mix.max_repeat_fraction = 0.0"):  # fmt: skip
        mix(short, 4000, SMT, 0.1, seed=0)
    _, report = mix(short, 4000, SMT, 0.1, seed=0, max_repeat_fraction=0.6)
    assert report["unique_tokens"]["active_reading"] <= 903 < report["tokens"]["active_reading"]
    assert report["unique_synthetic_tokens"] == report["synthetic_tokens"] - report["repeated_tokens"]["active_reading"]
    with pytest.raises(ValueError, match="stream 'active_reading' is empty but its token target is 2000"):
        mix({**STREAMS, "active_reading": []}, 4000, SMT, 0.1, seed=0)


def test_qa_items_keep_their_prompt_for_answer_only_loss() -> None:
    item = qa_item({"id": "d/qa/0", "doc_id": "d", "question": "Why?", "answer": "Because."})
    assert item["text"] == "Question: Why?\nAnswer: Because."
    assert item["prompt"] == "Question: Why?\nAnswer:" and item["text"][len(item["prompt"]) :] == " Because."
    with pytest.raises(ValueError, match="QA d/qa/1: the answer is empty"):
        qa_item({"id": "d/qa/1", "doc_id": "d", "question": "Why?", "answer": ""})


def test_replay_corpus_formats(tmp_path: Path) -> None:
    (tmp_path / "r.txt").write_text("First passage.\n\n\nSecond\npassage.\n")
    (tmp_path / "r.jsonl").write_text('{"text": "One."}\n{"text": "  "}\n{"text": "Two."}\n')
    pl.DataFrame({"text": ["A.", "B."], "url": ["u", "v"]}).write_parquet(tmp_path / "r.parquet")
    assert [p["text"] for p in replay_passages(str(tmp_path / "r.txt"))] == ["First passage.", "Second\npassage."]
    assert [p["text"] for p in replay_passages(str(tmp_path / "r.jsonl"))] == ["One.", "Two."]
    assert [p["id"] for p in replay_passages(str(tmp_path / "r.parquet"))] == ["replay/0", "replay/1"]
    (tmp_path / "bad.jsonl").write_text('{"text": "ok"}\n{"body": "no text"}\n')
    with pytest.raises(ValueError, match=r"bad\.jsonl: record 2: field 'text' is missing"):
        replay_passages(str(tmp_path / "bad.jsonl"))
    (tmp_path / "empty.txt").write_text("\n\n")
    with pytest.raises(ValueError, match=r"empty\.txt: the replay corpus holds no passage"):
        replay_passages(str(tmp_path / "empty.txt"))
    with pytest.raises(ValueError, match=r"must be a \.txt, \.jsonl or \.parquet file"):
        replay_passages(str(tmp_path / "r.csv"))
