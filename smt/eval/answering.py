"""Generated answers and how they are read: the generation scorer, free-form answers, the judge, numbers.

Multiple choice (`generate`): the question, framed with the document's title, author and year as EntiGraph frames
QuALITY questions, follows k worked examples (`eval.generate.shots` of the file `eval.generate.shots_file`,
each a question, its choices, a chain of thought and `Answer: X.`; the layout is smt/prompts/mc_cot.txt); the
model writes its reasoning and ends with `Answer: X.`. An output without a parseable letter is counted as
unparseable (and wrong in the accuracy; the accuracy over attempted answers leaves it out), never guessed.

Free-form (FinanceBench): the model answers in words; an LLM judge compares the answer with the gold answer
(smt/prompts/judge.txt, verdict parsed from `Verdict: correct|incorrect`), and a deterministic check compares
the numbers when the gold answer has one.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from smt import prompts
from smt.eval.letter import choices_block, context_block, letters
from smt.synth.generation import Request

MC_PROMPT = "mc_cot"
ANSWER_PROMPT = "free_form_answer"
JUDGE_PROMPT = "judge"
_CHOICE = re.compile(r"Answer:\s*\(?([A-Z])\)?(?![A-Za-z])")
_VERDICT = re.compile(r"Verdict:\s*\**\s*(correct|incorrect)\b", re.IGNORECASE)
_NUMBER = re.compile(
    r"(\()?-?\$?\s?(\d{1,3}(?:,\d{3})+|\d+)(\.\d+)?\s*(%|percent|thousand|million|billion|bn|mn)?", re.IGNORECASE
)
SCALES = {"thousand": 1e3, "million": 1e6, "mn": 1e6, "billion": 1e9, "bn": 1e9}


SHOT_FIELDS = {"question": str, "choices": list, "thought": str, "answer": str}


def load_shots(path: str | Path, k: int) -> list[dict[str, Any]]:
    """The first k worked examples of a JSONL file; a malformed line is an error naming the file, the line and
    the field."""
    lines = [line for line in Path(path).read_text().splitlines() if line.strip()]
    if k > len(lines):
        raise ValueError(f"{path}: eval.generate.shots = {k}, but the file holds {len(lines)} examples")
    shots = []
    for number, line in enumerate(lines[:k], 1):
        where = f"{path}: record line {number}"
        try:
            shot = json.loads(line)
        except json.JSONDecodeError as exc:
            raise ValueError(f"{where}: not JSON ({exc.msg})") from None
        for field, kind in SHOT_FIELDS.items():
            if not isinstance(shot, dict) or not isinstance(shot.get(field), kind) or not shot[field]:
                raise ValueError(f"{where}: field '{field}' must be a non-empty {kind.__name__}")
        if not all(isinstance(c, str) and c for c in shot["choices"]) or len(shot["choices"]) < 2:
            raise ValueError(f"{where}: field 'choices' must list at least two non-empty strings")
        if shot["answer"] not in letters(len(shot["choices"])):
            raise ValueError(f"{where}: field 'answer' = {shot['answer']!r} is not a letter of its choices")
        shots.append(shot)
    return shots


def mc_content(framed_question: str, options: Sequence[str], passages: Sequence[str], shots: Sequence[dict]) -> str:
    """The instruction, the worked examples, then the question (smt/prompts/mc_cot.txt)."""
    parts = prompts.sections(MC_PROMPT)
    examples = "".join(
        parts["shot"].format(
            question=s["question"], choices=choices_block(s["choices"]), thought=s["thought"], answer=s["answer"]
        )
        + "\n"
        for s in shots
    )
    question = parts["question"].format(
        context=context_block(passages), question=framed_question, choices=choices_block(options)
    )
    return parts["instruction"] + "\n" + examples + question


def mc_request(
    key: str,
    framed_question: str,
    options: Sequence[str],
    passages: Sequence[str] = (),
    shots: Sequence[dict] = (),
    seed: int = 0,
) -> Request:
    """The chain-of-thought request for one multiple-choice question (the seed matters when sampling)."""
    content = mc_content(framed_question, options, passages, shots)
    return Request(key, [{"role": "user", "content": content}], seed=seed, prefill="Thought process:")


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
