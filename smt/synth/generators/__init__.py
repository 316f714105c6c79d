"""Synthetic-document generators, one module each; `synth_docs@<benchmark>-<generator>` runs one of them.

- active_reading: learning strategies for the document, then one strategy applied per item (SMT's generator).
- focal_rewrite: Active Reading's second step "with focus on the question: {q}", q generated in the QA stream
  for the same document (never a benchmark question).
- wrap: the document rephrased in a style (Wikipedia-like, question-answer, easy, hard), after WRAP.
- entigraph: a summary and entities as JSON, then discussions of how pairs and triples of them relate.

Each module has `produce(job) -> Outcome` (smt.synth.engine.Job: the shard's documents, the generator's options
from `synth_docs.generators.<name>`, sampling, seed and a completion function); its prompts are
smt/prompts/<name>.txt (plus the shared strategies prompt for the first two). The QA stream's generator is
`qa` (not a document generator).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from smt.synth import collect
from smt.synth.generation import Completion, Request

if TYPE_CHECKING:
    from smt.synth.job import Job

NAMES = ("active_reading", "focal_rewrite", "wrap", "entigraph")
MIN_WORDS = 20


def user_request(key: str, template: str, seed: int, **fields: Any) -> Request:
    return Request(key, [{"role": "user", "content": template.format(**fields)}], seed)


def check_document(completion: Completion) -> str | None:
    """The reason a generated document is rejected, or None. A long document cut at max_new_tokens is kept
    (its record says finish_reason 'length'); a short one is rejected as truncated."""
    failed = collect.failure(completion)
    if failed:
        return failed
    if len(completion.text.split()) < MIN_WORDS:
        return (
            "truncated at max_new_tokens"
            if completion.finish_reason == "length"
            else f"too short (< {MIN_WORDS} words)"
        )
    return None


def accept_document(collector: collect.Collector, completion: Completion, doc_id: str, **fields: Any) -> int:
    """Keep a generated document or reject it with its reason; return the completion tokens it adds."""
    reason = check_document(completion)
    if reason:
        collector.reject(completion.key, doc_id, reason, completion.text)
        return 0
    text = completion.text.strip()
    if not collector.accept(completion, doc_id, unique=text, **fields, text=text):
        return 0
    if completion.finish_reason == "length":
        collector.counts["accepted_truncated"] += 1
    return completion.completion_tokens


def producer(name: str) -> Callable[[Job], collect.Outcome]:
    """The `produce(job)` function of a document generator, by name."""
    if name not in NAMES:
        raise ValueError(f"synth_docs.generators: unknown generator {name!r}; available: {list(NAMES)}")
    return importlib.import_module(f"smt.synth.generators.{name}").produce
