"""The `option_loglik` scorer: each option's text scored as the answer to the bare question (a cloze task).

The model sees the question without its options; each option is scored by the mean log-probability of its tokens
as the continuation of the prompt (length normalised, so long options are not penalised for their length), and
the likeliest wins. No sampling is involved, so the score is deterministic for a given model and prompt. Options
that refer to each other ("both A and B") cannot work this way; the `letter` scorer (smt.eval.letter) shows them.

On a CPU each question runs on its own, its prompt once and its options as a batch over the shared KV cache; on a
GPU whole (prompt, option) sequences of several questions run together, sorted by length.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from smt import prompts
from smt.inference import has_chat_template, pad_token_id, render_chat

PROMPT = "option_loglik"  # the question after any excerpts, asking for the answer only
CONTEXT_PROMPT = "option_loglik_context"


@dataclass(frozen=True)
class Scored:
    """Per-option mean log-probabilities and the index of the best option (the first of tied maxima)."""

    scores: list[float]
    best: int

    @property
    def tie(self) -> bool:
        """Several options share the best score: the first wins, and the record says so."""
        return sum(v == self.scores[self.best] for v in self.scores) > 1


@dataclass(frozen=True)
class _Encoded:
    """Token ids of prompt + option, and where the option's tokens start."""

    ids: list[int]
    start: int


# ---------------------------------------------------------------------------------------------- prompts


def user_message(framed_question: str, context: Sequence[str] = ()) -> str:
    """The (framed) question after any retrieved excerpts, asking for the answer only."""
    excerpts = prompts.load(CONTEXT_PROMPT).format(passages="\n\n".join(context)) if context else ""
    return prompts.text(PROMPT).format(context=excerpts, question=framed_question)


def build_prompt(
    tokenizer: Any, framed_question: str, context: Sequence[str] = (), chat_kwargs: dict[str, Any] | None = None
) -> str:
    """The text that the answer continues: the chat template's assistant turn, or a plain Q/A layout."""
    message = user_message(framed_question, context)
    if has_chat_template(tokenizer):
        return render_chat(tokenizer, [{"role": "user", "content": message}], chat_kwargs)
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


def encode(
    tokenizer: Any, prompt: str, option: str, prompt_ids: Sequence[int] | None = None, max_length: int | None = None
) -> _Encoded:
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


def encode_question(
    tokenizer: Any, prompt: str, options: Sequence[str], max_length: int | None = None
) -> list[_Encoded]:
    prompt_ids = tokenizer(prompt, add_special_tokens=not has_chat_template(tokenizer))["input_ids"]
    return [encode(tokenizer, prompt, o, prompt_ids, max_length) for o in options]


# ---------------------------------------------------------------------------------------------- scoring


@torch.inference_mode()
def mean_logprobs(model: Any, seqs: Sequence[_Encoded], pad_id: int) -> list[float]:
    """Per sequence, the mean log-probability of its option tokens.

    The options of one question share the prompt: it runs once, its KV cache is repeated for every option, and
    only the right-padded option tails run as a batch (about 3x faster than full sequences on a RAG prompt).
    """
    device = next(model.parameters()).device
    shared = min(s.start for s in seqs) - 1
    for s in seqs[1:]:
        shared = min(shared, _common_prefix(seqs[0].ids[:shared], s.ids))
    cache = None
    if shared > 0:
        prefix = torch.tensor([seqs[0].ids[:shared]], dtype=torch.long, device=device)
        cache = model(input_ids=prefix, use_cache=True).past_key_values
        cache.batch_repeat_interleave(len(seqs))
    tails = [s.ids[shared:] for s in seqs]
    length = max(len(t) for t in tails)
    input_ids = torch.full((len(seqs), length), pad_id, dtype=torch.long)
    mask = torch.zeros((len(seqs), shared + length), dtype=torch.long)
    mask[:, :shared] = 1
    for row, tail in enumerate(tails):
        input_ids[row, : len(tail)] = torch.tensor(tail, dtype=torch.long)
        mask[row, shared : shared + len(tail)] = 1
    positions = torch.arange(shared, shared + length)[None].expand(len(seqs), -1)
    logits = model(
        input_ids=input_ids.to(device),
        attention_mask=mask.to(device),
        position_ids=positions.to(device),
        past_key_values=cache,
        use_cache=cache is not None,
    ).logits
    result = []
    for row, s in enumerate(seqs):
        rows = torch.arange(s.start - 1, len(s.ids) - 1, device=logits.device) - shared
        targets = torch.tensor(s.ids[s.start :], dtype=torch.long, device=logits.device)
        logp = torch.log_softmax(logits[row, rows].float(), dim=-1)
        result.append(float(logp.gather(1, targets[:, None]).mean()))
    return result


def _scored(scores: list[float]) -> Scored:
    return Scored(scores, max(range(len(scores)), key=lambda i: scores[i]))


def _max_length(model: Any) -> int | None:
    return getattr(getattr(model, "config", None), "max_position_embeddings", None)


def score_options(model: Any, tokenizer: Any, prompt: str, options: Sequence[str], batch_size: int = 8) -> Scored:
    """Score one question's options: one forward pass, or several if it has more than batch_size options."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    seqs = encode_question(tokenizer, prompt, options, _max_length(model))
    pad_id = pad_token_id(tokenizer)
    scores = [
        v for i in range(0, len(seqs), batch_size) for v in mean_logprobs(model, seqs[i : i + batch_size], pad_id)
    ]
    return _scored(scores)


def score_questions(
    model: Any, tokenizer: Any, items: Iterable[tuple[str, Sequence[str]]], batch_size: int = 8
) -> Iterator[Scored]:
    """Score (prompt, options) pairs in order, lazily, so callers can show progress.

    Questions are not packed together: on CPU, padding two prompts of different lengths into one pass
    was measured slower than one pass per question.
    """
    for prompt, options in items:
        yield score_options(model, tokenizer, prompt, options, batch_size)


@torch.inference_mode()
def full_sequence_logprobs(model: Any, seqs: Sequence[_Encoded], pad_id: int) -> list[float]:
    """Per sequence, the mean log-probability of its option tokens, every sequence run whole (right-padded)."""
    device = next(model.parameters()).device
    length = max(len(s.ids) for s in seqs)
    input_ids = torch.full((len(seqs), length), pad_id, dtype=torch.long)
    mask = torch.zeros((len(seqs), length), dtype=torch.long)
    for row, s in enumerate(seqs):
        input_ids[row, : len(s.ids)] = torch.tensor(s.ids, dtype=torch.long)
        mask[row, : len(s.ids)] = 1
    logits = model(input_ids=input_ids.to(device), attention_mask=mask.to(device)).logits
    result = []
    for row, s in enumerate(seqs):
        logp = torch.log_softmax(logits[row, s.start - 1 : len(s.ids) - 1].float(), dim=-1)
        targets = torch.tensor(s.ids[s.start :], dtype=torch.long, device=logits.device)
        result.append(float(logp.gather(1, targets[:, None]).mean()))
    return result


def score_across_questions(
    model: Any, tokenizer: Any, items: Sequence[tuple[str, Sequence[str]]], batch_size: int = 8
) -> list[Scored]:
    """Every question's options, `batch_size` (prompt, option) sequences per forward pass across questions,
    sorted by length so that little is padding: the GPU path (one pass per question leaves a GPU idle)."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    limit = _max_length(model)
    seqs = [
        (q, o, e) for q, (p, opts) in enumerate(items) for o, e in enumerate(encode_question(tokenizer, p, opts, limit))
    ]
    order = sorted(range(len(seqs)), key=lambda i: len(seqs[i][2].ids))
    pad_id = pad_token_id(tokenizer)
    scores: list[list[float]] = [[0.0] * len(opts) for _, opts in items]
    for start in range(0, len(order), batch_size):
        batch = [seqs[i] for i in order[start : start + batch_size]]
        for (q, o, _), value in zip(
            batch, full_sequence_logprobs(model, [e for _, _, e in batch], pad_id), strict=True
        ):
            scores[q][o] = value
    return [_scored(s) for s in scores]
