"""Mixing: token targets met within one item, ratio and replay share as configured, deterministic."""

from __future__ import annotations

import random

from smt.stages.mix import take


def items(n: int, tokens: int) -> list[dict]:
    return [{"id": f"i{k}", "tokens": tokens} for k in range(n)]


def test_take_reaches_target_within_one_item() -> None:
    chosen, repeats = take(items(10, 37), 1000, random.Random(0))
    total = sum(i["tokens"] for i in chosen)
    assert 1000 <= total < 1000 + 37
    assert repeats == 2  # 10 items x 37 tokens = 370 per pass: three passes


def test_take_is_deterministic_and_seed_dependent() -> None:
    a, _ = take(items(20, 5), 60, random.Random(1))
    b, _ = take(items(20, 5), 60, random.Random(1))
    c, _ = take(items(20, 5), 60, random.Random(2))
    assert [i["id"] for i in a] == [i["id"] for i in b] != [i["id"] for i in c]


def test_take_nothing() -> None:
    assert take([], 100, random.Random(0)) == ([], 0)
    assert take(items(3, 5), 0, random.Random(0)) == ([], 0)
