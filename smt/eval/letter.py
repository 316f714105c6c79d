"""The `letter` scorer: multiple choice as the common harnesses score MMLU-style tasks.

The prompt lists the options with their letters (smt/prompts/mc_letter.txt), and the model's turn opens with
`Answer:`; the prediction is the letter to which the model gives the most probability as its next token (each
letter's probability summed over its spellings that are one token, " A" and "A"). Options that refer to each
other ("both A and B") work, and a model that knows nothing scores chance, 1/k, which makes a base model's floor
honest. One forward pass per question, `batch_size` questions per pass (left-padded, last position only).
"""

from __future__ import annotations

import string
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from smt import prompts
from smt.inference import has_chat_template, next_token_logprobs, render_chat

PROMPT = "mc_letter"
ANSWER_CUE = "Answer:"
CONTEXT_HEADER = "Excerpts from the documents:\n"


@dataclass(frozen=True)
class Scored:
    """Per-option log-probability of its letter, the best option (the first of tied maxima), and how much
    probability all the letters hold together (the rest went to other tokens)."""

    scores: list[float]
    best: int
    letter_mass: float

    @property
    def tie(self) -> bool:
        return sum(v == self.scores[self.best] for v in self.scores) > 1


def letters(n: int) -> str:
    if not 1 <= n <= 26:
        raise ValueError(f"a multiple-choice question needs 1 to 26 options, got {n}")
    return string.ascii_uppercase[:n]


def choices_block(options: Sequence[str]) -> str:
    return "\n".join(f"{letter}. {option}" for letter, option in zip(letters(len(options)), options, strict=True))


def context_block(passages: Sequence[str]) -> str:
    return CONTEXT_HEADER + "\n\n".join(passages) + "\n\n" if passages else ""


def user_message(framed_question: str, options: Sequence[str], context: Sequence[str] = ()) -> str:
    return prompts.text(PROMPT).format(
        context=context_block(context), question=framed_question, choices=choices_block(options)
    )


def build_prompt(
    tokenizer: Any,
    framed_question: str,
    options: Sequence[str],
    context: Sequence[str] = (),
    chat_kwargs: dict[str, Any] | None = None,
) -> str:
    """The question with its lettered options, then `Answer:` (in the assistant's turn where the model has a
    chat template), so that the next token is the letter."""
    message = user_message(framed_question, options, context)
    if has_chat_template(tokenizer):
        return render_chat(tokenizer, [{"role": "user", "content": message}], chat_kwargs) + ANSWER_CUE
    return f"{message}\n{ANSWER_CUE}"


def letter_tokens(tokenizer: Any, n: int) -> list[list[int]]:
    """For each of the first n letters, the ids of its one-token spellings (" A" and "A")."""
    found = []
    for letter in letters(n):
        ids = {tuple(tokenizer.encode(v, add_special_tokens=False)) for v in (f" {letter}", letter)}
        single = sorted(t[0] for t in ids if len(t) == 1)
        if not single:
            raise ValueError(
                f"the tokenizer spells the letter {letter!r} in several tokens: the letter scorer needs one"
            )
        found.append(single)
    return found


def score(logprobs: torch.Tensor, tokens: list[list[int]]) -> Scored:
    """One question's letters scored from its next-token log-probabilities."""
    per_letter = [float(torch.logsumexp(logprobs[ids], dim=0)) for ids in tokens]
    best = max(range(len(per_letter)), key=lambda i: per_letter[i])
    mass = float(torch.logsumexp(torch.tensor(per_letter), dim=0).exp())
    return Scored(per_letter, best, mass)


def score_prompts(model: Any, tokenizer: Any, items: Sequence[tuple[str, int]], batch_size: int = 8) -> list[Scored]:
    """(prompt, number of options) pairs scored in order, `batch_size` prompts per pass, longest first so that
    a batch holds prompts of similar lengths."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    order = sorted(range(len(items)), key=lambda i: -len(items[i][0]))
    found: dict[int, Scored] = {}
    for start in range(0, len(order), batch_size):
        batch = order[start : start + batch_size]
        logprobs = next_token_logprobs(model, tokenizer, [items[i][0] for i in batch])
        for row, i in enumerate(batch):
            found[i] = score(logprobs[row], letter_tokens(tokenizer, items[i][1]))
    return [found[i] for i in range(len(items))]
