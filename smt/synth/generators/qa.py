"""Synthetic QAs: open-ended questions about a document, answered with a short explanation.

Each document's `per_document` requests have their own seeds, so the records do not depend on shards or
batches. A pair is rejected, with its reason in the manifest, when it is missing, has no parseable question and
answer, or repeats a question already accepted for the same document. A pair cut at max_new_tokens keeps its answer
up to its last complete sentence, and is rejected when no complete sentence is left.
"""

from __future__ import annotations

import re
from typing import Any

from smt import prompts
from smt.synth import collect, rounds
from smt.synth.generation import Completion, Request, item_seed
from smt.synth.job import Job

PROMPT = "synth_qa"
GENERATOR = "qa"
PREFILL = "Question:"
_SENTENCE_END = re.compile(r"[.!?][\"')\]]*(?=\s|\Z)")
_QA = re.compile(r"Question:\s*(?P<q>.+?)\s*\n+\s*Answer:\s*(?P<a>.+?)\s*(?=\n\s*Question:|\Z)", re.DOTALL)


def unwrap(text: str) -> str:
    """The text without the quotes or Markdown emphasis a model may wrap it in ('"Who?"', '**Who?**')."""
    text = text.strip()
    for mark in ('"', "**", "*", "'", "“"):
        closing = "”" if mark == "“" else mark
        if len(text) > 2 * len(mark) and text.startswith(mark) and text.endswith(closing):
            return text[len(mark) : -len(closing)].strip()
    return text


def parse_pair(question: str, answer: str) -> tuple[str, str] | str:
    """(question, answer), or the reason the pair is rejected."""
    question, answer = unwrap(" ".join(question.split())), unwrap(answer)
    if not question.endswith("?") or len(question) < 10:
        return "unparseable: question is not a question"
    if len(answer) < 2:
        return "empty answer"
    return question, answer


def complete_sentences(answer: str) -> str:
    """The answer up to the end of its last complete sentence or line ('' when none ends): what survives a cut."""
    ends = [m.end() for m in _SENTENCE_END.finditer(answer)] + [m.start() for m in re.finditer(r"\n", answer)]
    return answer[: max(ends)].rstrip() if ends else ""


def trim_truncated(pair: tuple[str, str] | str) -> tuple[str, str] | str:
    """A pair whose completion hit max_new_tokens, cut back to its complete sentences, or the reason it is lost."""
    if isinstance(pair, str):
        return "truncated at max_new_tokens"
    answer = complete_sentences(pair[1])
    return (pair[0], answer) if len(answer) >= 2 else "truncated at max_new_tokens"


def parse(text: str, cut: bool = False) -> list[tuple[str, str] | str]:
    """Every 'Question: ... Answer: ...' pair in a completion, each parsed or with the reason it is rejected. With
    `cut` (the completion hit max_new_tokens), a last pair that runs to the end of the text is the one cut short:
    it keeps its complete sentences; a pair followed by another question is whole."""
    matches = list(_QA.finditer(text))
    pairs = [parse_pair(m["q"], m["a"]) for m in matches]
    if cut and matches and matches[-1].end() == len(text):
        pairs[-1] = trim_truncated(pairs[-1])
    return pairs


def accepted_tokens(completion: Completion, kept_chars: int) -> int:
    """The completion tokens that ended up in accepted pairs, by their share of the completion's characters. The
    rounds size the next ask from this; counting a fixed share per pair asked would undercount a completion that
    wrote fewer, longer pairs than asked (the embedded 135M model often writes one), and ask for several times too
    many requests."""
    share = kept_chars / max(len(completion.text), 1)
    return min(completion.completion_tokens, round(completion.completion_tokens * share))


def produce(job: Job) -> collect.Outcome:
    """Open-ended QAs, `per_request` pairs asked for in each request, in rounds until every document holds its
    share of the stream's token target (smt.synth.rounds). Each pair is its own record; a pair that is missing,
    malformed, cut off or a repeat is rejected with its reason."""
    sampling = job.sampling()
    template = prompts.load(PROMPT)
    count = job.options["per_request"]
    asked = "one question" if count == 1 else f"{count} different questions"
    collector = collect.Collector(GENERATOR)

    def build(doc: dict[str, Any], start: int, n: int) -> list[rounds.Item]:
        content = template.format(document=collect.document_text(doc), title=doc["title"], questions=asked)
        items = []
        for index in range(start, start + n):
            key, seed = f"{doc['doc_id']}/qa/{index}", item_seed(job.seed, doc["doc_id"], PROMPT, index)
            request = Request(key, [{"role": "user", "content": content}], seed, prefill=PREFILL)
            items.append(rounds.Item(request, {"doc_id": doc["doc_id"], "index": index, "seed": seed}))
        return items

    def accept(completion: Completion, meta: dict[str, Any]) -> int:
        failed = collect.failure(completion, PREFILL)
        pairs = [failed] if failed else parse(completion.text, cut=completion.finish_reason == "length")
        pairs = (pairs + ["missing: fewer pairs than asked"] * count)[:count]
        kept = 0  # characters of the accepted pairs
        for n, pair in enumerate(pairs):
            key = f"{completion.key}/{n}"
            if isinstance(pair, str):
                collector.reject(key, meta["doc_id"], pair, completion.text if n == 0 else "")
            elif collector.accept(
                completion,
                meta["doc_id"],
                unique=pair[0],
                key=key,
                index=meta["index"],
                pair=n,
                seed=meta["seed"],
                question=pair[0],
                answer=pair[1],
            ):
                kept += len(pair[0]) + len(pair[1])
        return accepted_tokens(completion, kept)

    rounds.run(job, collector, GENERATOR, sampling, job.options["per_document"], build, accept, planned=count)
    return collector.outcome({"qa": sampling}, [PROMPT])
