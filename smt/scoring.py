"""Multiple-choice scoring by log-likelihood: the option the model finds likeliest as its answer wins.

Each option is scored by the mean log-probability of its tokens as the continuation of the prompt (length
normalised, so long options are not penalised for their length). No sampling is involved, so the score is
deterministic for a given model and prompt.
"""

from __future__ import annotations

import inspect
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import torch

CONTEXT_HEADER = "Use the following excerpts:\n"
ANSWER_REQUEST = "Answer with the correct answer only."
# Leading words lowercased when the question follows "In the context of ..., "; others may be proper nouns.
_LOWERCASE_LEADS = {
    "what", "which", "who", "whom", "whose", "when", "where", "why", "how", "in", "on", "at", "during", "after",
    "before", "according", "for", "from", "by", "to", "of", "is", "are", "was", "were", "did", "does", "do",
    "the", "a", "an", "approximately", "roughly", "about",
}


@dataclass(frozen=True)
class Scored:
    """Per-option mean log-probabilities and the index of the best option."""

    scores: list[float]
    best: int


@dataclass(frozen=True)
class _Encoded:
    """Token ids of prompt + option, and where the option's tokens start."""

    ids: list[int]
    start: int


# ---------------------------------------------------------------------------------------------- prompts


def _lead_lower(question: str) -> str:
    first = question.split(maxsplit=1)[0] if question.strip() else ""
    return question[0].lower() + question[1:] if first.lower() in _LOWERCASE_LEADS else question


def user_message(question: str, title: str, author: str, year: int | str, context: Sequence[str] = ()) -> str:
    """The question with its document's bibliographic frame, after any retrieved excerpts."""
    excerpts = CONTEXT_HEADER + "\n\n".join(context) + "\n\n" if context else ""
    return f'{excerpts}In the context of "{title}", written by {author} in {year}, {_lead_lower(question)}\n' \
           f"{ANSWER_REQUEST}"


def has_chat_template(tokenizer: Any) -> bool:
    return bool(getattr(tokenizer, "chat_template", None))


def build_prompt(tokenizer: Any, question: str, title: str, author: str, year: int | str,
                 context: Sequence[str] = ()) -> str:
    """The text that the answer continues: the chat template's assistant turn, or a plain Q/A layout."""
    message = user_message(question, title, author, year, context)
    if has_chat_template(tokenizer):
        return tokenizer.apply_chat_template([{"role": "user", "content": message}], add_generation_prompt=True,
                                             tokenize=False)
    return f"Question: {message}\nAnswer:"


# ---------------------------------------------------------------------------------------------- encoding


def _continuation(prompt: str, option: str) -> str:
    """The option as the text following the prompt: after a space unless the prompt ends in whitespace."""
    option = option.strip()
    return option if not prompt or prompt[-1].isspace() else " " + option


def _common_prefix(a: Sequence[int], b: Sequence[int]) -> int:
    n = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        n += 1
    return n


def encode(tokenizer: Any, prompt: str, option: str, prompt_ids: Sequence[int] | None = None,
           max_length: int | None = None) -> _Encoded:
    """Tokenize prompt + option as one text, so the option's tokens are those the model would produce.

    The option starts where the joint tokenization stops agreeing with the prompt's own tokenization (a
    token merged across the boundary counts as the option's). Over-long inputs lose tokens on the left.
    """
    special = not has_chat_template(tokenizer)
    if prompt_ids is None:
        prompt_ids = tokenizer(prompt, add_special_tokens=special)["input_ids"]
    ids = list(tokenizer(prompt + _continuation(prompt, option), add_special_tokens=special)["input_ids"])
    start = max(1, min(_common_prefix(prompt_ids, ids), len(ids) - 1))
    if max_length is not None and len(ids) > max_length:
        cut = min(len(ids) - max_length, start - 1)
        ids, start = ids[cut:], start - cut
    return _Encoded(ids, start)


def encode_question(tokenizer: Any, prompt: str, options: Sequence[str],
                    max_length: int | None = None) -> list[_Encoded]:
    prompt_ids = tokenizer(prompt, add_special_tokens=not has_chat_template(tokenizer))["input_ids"]
    return [encode(tokenizer, prompt, o, prompt_ids, max_length) for o in options]


# ---------------------------------------------------------------------------------------------- scoring


def _accepts_logits_to_keep(model: Any) -> bool:
    return "logits_to_keep" in inspect.signature(model.forward).parameters


def _pad_token_id(tokenizer: Any) -> int:
    for value in (tokenizer.pad_token_id, tokenizer.eos_token_id):
        if value is not None:
            return int(value)
    return 0


@torch.inference_mode()
def mean_logprobs(model: Any, seqs: Sequence[_Encoded], pad_id: int) -> list[float]:
    """One forward pass over right-padded sequences; per sequence, the mean log-probability of its option."""
    length = max(len(s.ids) for s in seqs)
    input_ids = torch.full((len(seqs), length), pad_id, dtype=torch.long)
    mask = torch.zeros((len(seqs), length), dtype=torch.long)
    for row, s in enumerate(seqs):
        input_ids[row, : len(s.ids)] = torch.tensor(s.ids, dtype=torch.long)
        mask[row, : len(s.ids)] = 1
    # Only positions that predict option tokens need logits; the vocabulary projection dominates memory.
    first = min(s.start for s in seqs) - 1
    kwargs: dict[str, Any] = {}
    if _accepts_logits_to_keep(model):
        kwargs["logits_to_keep"] = torch.arange(first, length - 1)
    else:
        first = 0
    device = next(model.parameters()).device
    logits = model(input_ids=input_ids.to(device), attention_mask=mask.to(device), **kwargs).logits
    result = []
    for row, s in enumerate(seqs):
        positions = torch.arange(s.start - 1, len(s.ids) - 1) - first
        targets = torch.tensor(s.ids[s.start:], dtype=torch.long, device=logits.device)
        logp = torch.log_softmax(logits[row, positions.to(logits.device)].float(), dim=-1)
        result.append(float(logp.gather(1, targets[:, None]).mean()))
    return result


def _scored(scores: list[float]) -> Scored:
    return Scored(scores, max(range(len(scores)), key=lambda i: scores[i]))


def _max_length(model: Any) -> int | None:
    return getattr(getattr(model, "config", None), "max_position_embeddings", None)


def score_options(model: Any, tokenizer: Any, prompt: str, options: Sequence[str]) -> Scored:
    """Score one question's options in a single forward pass."""
    seqs = encode_question(tokenizer, prompt, options, _max_length(model))
    return _scored(mean_logprobs(model, seqs, _pad_token_id(tokenizer)))


def _passes(questions: list[list[_Encoded]], batch_size: int) -> Iterator[list[tuple[int, list[_Encoded]]]]:
    """Group whole questions into passes of at most batch_size sequences (a larger question is split)."""
    group: list[tuple[int, list[_Encoded]]] = []
    size = 0
    for q, seqs in enumerate(questions):
        for i in range(0, len(seqs), batch_size):
            part = seqs[i:i + batch_size]
            if group and size + len(part) > batch_size:
                yield group
                group, size = [], 0
            group.append((q, part))
            size += len(part)
    if group:
        yield group


def score_questions(model: Any, tokenizer: Any, items: Iterable[tuple[str, Sequence[str]]],
                    batch_size: int = 8) -> Iterator[Scored]:
    """Score (prompt, options) pairs in order; each question's options share a forward pass when they fit.

    Yields one Scored per question as soon as its last pass is done, so callers can show progress.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    max_length, pad_id = _max_length(model), _pad_token_id(tokenizer)
    encoded = [encode_question(tokenizer, prompt, options, max_length) for prompt, options in items]
    scores: list[list[float]] = [[] for _ in encoded]
    done = 0
    for group in _passes(encoded, batch_size):
        flat = [s for _, part in group for s in part]
        values = iter(mean_logprobs(model, flat, pad_id))
        for q, part in group:
            scores[q].extend(next(values) for _ in part)
        while done < len(encoded) and len(scores[done]) == len(encoded[done]):
            yield _scored(scores[done])
            done += 1
