"""Evaluation pieces on hand-made cases with known answers: parsing, ties, numbers, intervals, the fit,
retrieval and reranking; then both multiple-choice scorers and the judge on the embedded default model."""

from __future__ import annotations

import math

import numpy as np
import pytest

from smt.eval import answering, option_loglik, stats
from smt.eval.framing import frame, framed_question

# ------------------------------------------------------------------------------------------------ parsing


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("The ferry was full, so... Answer: C.", "C"),
        ("Answer: (B)", "B"),
        ("First Answer: A. On reflection, Answer: D.", "D"),
        ("I am not sure which one.", None),  # unparseable: counted, never guessed
        ("Answer: E.", None),  # not one of four options
        ("Answer: Because the council asked him.", None),
    ],
)
def test_parse_choice(text: str, expected: str | None) -> None:
    assert answering.parse_choice(text, 4) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [(" correct", None), ("Verdict: correct", True), ("Verdict: **Incorrect**", False), ("no idea", None)],
)
def test_parse_verdict(text: str, expected: bool | None) -> None:
    assert answering.parse_verdict(text) is expected


@pytest.mark.parametrize(
    ("gold", "candidate", "expected"),
    [
        ("$1577.00", "Capital expenditure was $1,577 million.", True),
        ("$1.577 billion", "They spent 1577 million dollars", True),  # the same amount in another unit
        ("$1.577 billion", "They spent 1.577 million dollars", False),
        ("$1.577 billion", "They spent $1,577,000,000", True),
        ("The operating margin was 12.5%", "About 12.4%", True),  # within 1%
        ("The operating margin was 12.5%", "About 13%", False),
        ("(44)", "a loss of -44", True),
        ("Yes, it did.", "Yes", None),  # no number in the gold answer: no numeric check
    ],
)
def test_numeric_match(gold: str, candidate: str, expected: bool | None) -> None:
    assert answering.numeric_match(gold, candidate) is expected


def test_a_tie_goes_to_the_first_option_and_is_flagged() -> None:
    tied = option_loglik.Scored([-1.0, -0.5, -0.5, -2.0], best=1)
    assert tied.tie and option_loglik._scored([-1.0, -0.5, -0.5, -2.0]).best == 1
    assert not option_loglik._scored([-1.0, -0.4, -0.5]).tie


def test_framing_follows_entigraph_and_leaves_out_missing_parts() -> None:
    doc = {"title": "The Salt Road", "author": "Ilse Marrow", "year": 1951}
    assert framed_question("Why did he refuse?", doc) == (
        'In the context of "The Salt Road", written by Ilse Marrow in 1951, why did he refuse?'
    )
    assert frame("3M 2018 10-K", None, 2018) == 'In the context of "3M 2018 10-K", '
    assert framed_question("What is X?", None) == "What is X?"


# ------------------------------------------------------------------------------------------------ statistics


def test_bootstrap_interval_properties() -> None:
    rng = np.random.default_rng(0)
    outcomes = (rng.random(400) < 0.6).tolist()
    low, high = stats.bootstrap_ci(outcomes, 2000, seed=1)
    mean = sum(outcomes) / len(outcomes)
    assert low < mean < high and 0.05 < high - low < 0.12  # about 2 x 1.96 x sqrt(.24/400) = 0.096
    assert stats.bootstrap_ci(outcomes, 2000, seed=1) == (low, high)  # seeded
    small_low, small_high = stats.bootstrap_ci(outcomes[:50], 2000, seed=1)
    assert small_high - small_low > high - low  # fewer questions, wider interval
    assert stats.bootstrap_ci([True] * 30, 500) == (1.0, 1.0)
    with pytest.raises(ValueError, match="no outcomes"):
        stats.bootstrap_ci([], 10)


def test_log_linear_fit_recovers_known_coefficients() -> None:
    tokens = [1e5, 3e5, 1e6, 3e6, 1e7]
    fit = stats.fit_log_linear(tokens, [0.1 + 0.03 * math.log(t) for t in tokens])
    assert fit is not None and fit.a == pytest.approx(0.1) and fit.b == pytest.approx(0.03) and fit.r2 == 1.0
    assert fit.per_doubling == pytest.approx(0.03 * math.log(2))
    assert fit.tokens_for(fit.predict(2e6)) == pytest.approx(2e6)
    assert stats.fit_log_linear([1e5, 1e5], [0.2, 0.3]) is None  # one budget: no slope


def test_a_nearly_flat_fit_never_reaches_a_far_accuracy() -> None:
    """Two smoke budgets whose closed-book scores differ by a hair: the line would reach RAG's accuracy only at
    e^(thousands) tokens, which no float holds."""
    fit = stats.fit_log_linear([300, 600], [0.2, 0.2000001])
    assert fit is not None and fit.b > 0 and fit.tokens_for(0.6) is None
    assert stats.fit_log_linear([300, 600], [0.3, 0.2]).tokens_for(0.6) is None  # falling: never
