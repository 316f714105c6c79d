"""Generated answers and how they are read: the generation scorer, free-form answers, the judge, numbers.

Multiple choice (EntiGraph's protocol): the question is framed with the document's title, author and year, the
model sees few-shot chain-of-thought examples (smt/prompts/mc_cot.txt), writes its reasoning and ends with
`Answer: X.`; an output without a parseable letter counts as wrong and is counted as unparseable, never guessed.

Free-form (FinanceBench): the model answers in words; an LLM judge compares the answer with the gold answer
(smt/prompts/judge.txt, verdict parsed from `Verdict: correct|incorrect`), and a deterministic check compares
the numbers when the gold answer has one.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence

from smt import prompts
from smt.synth.generation import Request

MC_PROMPT = "mc_cot"
ANSWER_PROMPT = "free_form_answer"
JUDGE_PROMPT = "judge"
CONTEXT_HEADER = "Excerpts from the documents:\n"
_CHOICE = re.compile(r"Answer:\s*\(?([A-Z])\)?(?![A-Za-z])")
_VERDICT = re.compile(r"Verdict:\s*\**\s*(correct|incorrect)\b", re.IGNORECASE)
_NUMBER = re.compile(
    r"(\()?-?\$?\s?(\d{1,3}(?:,\d{3})+|\d+)(\.\d+)?\s*(%|percent|thousand|million|billion|bn|mn)?", re.IGNORECASE
)
SCALES = {"thousand": 1e3, "million": 1e6, "mn": 1e6, "billion": 1e9, "bn": 1e9}


def context_block(passages: Sequence[str]) -> str:
    return CONTEXT_HEADER + "\n\n".join(passages) + "\n\n" if passages else ""


def choices_block(options: Sequence[str]) -> str:
    return "\n".join(f"{chr(65 + i)}. {option}" for i, option in enumerate(options))


def mc_request(key: str, framed_question: str, options: Sequence[str], passages: Sequence[str] = ()) -> Request:
    """The chain-of-thought request for one multiple-choice question (greedy decoding: seed unused)."""
    content = prompts.load(MC_PROMPT).format(
        context=context_block(passages), question=framed_question, choices=choices_block(options)
    )
    return Request(key, [{"role": "user", "content": content}], seed=0, prefill="Thought process:")


def parse_choice(text: str, n_options: int) -> str | None:
    """The letter of the last `Answer: X` among the valid letters, or None when there is none."""
    letters = [m for m in _CHOICE.findall(text) if ord(m) - 65 < n_options]
    return letters[-1] if letters else None


def answer_request(key: str, question: str, passages: Sequence[str] = ()) -> Request:
    content = prompts.load(ANSWER_PROMPT).format(context=context_block(passages), question=question)
    return Request(key, [{"role": "user", "content": content}], seed=0)


def judge_request(key: str, question: str, gold: str, candidate: str) -> Request:
    content = prompts.load(JUDGE_PROMPT).format(question=question, gold=gold, candidate=candidate.strip() or "(none)")
    return Request(key, [{"role": "user", "content": content}], seed=0, prefill="Verdict:")


def parse_verdict(text: str) -> bool | None:
    """True (correct), False (incorrect) or None when the judge's output has no verdict."""
    found = _VERDICT.findall(text)
    return found[-1].lower() == "correct" if found else None


Amount = tuple[float, float | None]  # (number as written, number times its unit word if one follows)


def _amount(match: re.Match[str]) -> Amount:
    """A matched number: thousands separators removed, a leading minus or parenthesis (accounting style) read
    as negative, and scaled by a following unit word (1.5 billion -> 1.5e9)."""
    _, whole, frac, unit = match.groups()
    value = float(whole.replace(",", "") + (frac or ""))
    if match.group(0).startswith(("(", "-")):
        value = -value
    scale = SCALES.get((unit or "").lower())
    return value, value * scale if scale else None


def amounts(text: str) -> list[Amount]:
    return [_amount(match) for match in _NUMBER.finditer(text)]


def same_amount(a: Amount, b: Amount, rel_tol: float) -> bool:
    """Two amounts agree: by their scaled values when both name a unit (1.5 million is not 1.5 billion),
    otherwise as written or with the one unit applied ($1,577 with "in millions" implied = 1,577 million)."""
    (a_raw, a_scaled), (b_raw, b_scaled) = a, b
    if a_scaled is not None and b_scaled is not None:
        return math.isclose(a_scaled, b_scaled, rel_tol=rel_tol)
    pairs = [(a_raw, b_raw), (a_scaled, b_raw), (a_raw, b_scaled)]
    return any(x is not None and y is not None and math.isclose(x, y, rel_tol=rel_tol) for x, y in pairs)


def numeric_match(gold: str, candidate: str, rel_tol: float = 0.01) -> bool | None:
    """Whether the candidate states the gold answer's first number (within rel_tol); None when the gold answer
    has no number."""
    first = _NUMBER.search(gold)
    if not first:
        return None
    target = _amount(first)
    return any(same_amount(target, found, rel_tol) for found in amounts(candidate))
