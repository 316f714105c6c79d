"""Synthetic-document generators, one module each; `synth_docs@<benchmark>-<generator>` runs one of them.

- active_reading: learning strategies for the document, then one strategy applied per item (SMT's generator).
- focal_rewrite: Active Reading's second step "with focus on the question: {q}", q generated in the QA stream
  for the same document (never a benchmark question).
- wrap: the document rephrased in a style (Wikipedia-like, question-answer, easy, hard), after WRAP.
- entigraph: a summary and entities as JSON, then discussions of how pairs and triples of them relate.

Each module has `produce(run) -> Outcome`; its options are `synth_docs.generators.<name>` in params.yaml and
its prompts are smt/prompts/<name>.txt (plus the shared strategies prompt for the first two).
"""

from __future__ import annotations

import importlib
from typing import Any

from smt import synth
from smt.generation import Completion, Request, Sampling

NAMES = ("active_reading", "focal_rewrite", "wrap", "entigraph")
MIN_WORDS = 20


def options(run: Any, name: str) -> dict[str, Any]:
    return run.ctx.p(f"synth_docs.generators.{name}")


def document_sampling(run: Any) -> Sampling:
    ctx = run.ctx
    return Sampling(ctx.p("synth_docs.temperature"), ctx.p("synth_docs.top_p"), ctx.p("synth_docs.max_new_tokens"))


def user_request(key: str, template: str, seed: int, **fields: Any) -> Request:
    return Request(key, [{"role": "user", "content": template.format(**fields)}], seed)


def check_document(completion: Completion) -> str | None:
    """The reason a generated document is rejected, or None. A long document cut at max_new_tokens is kept
    (its record says finish_reason 'length'); a short one is rejected as truncated."""
    failed = synth.failure(completion)
    if failed:
        return failed
    if len(completion.text.split()) < MIN_WORDS:
        return (
            "truncated at max_new_tokens"
            if completion.finish_reason == "length"
            else f"too short (< {MIN_WORDS} words)"
        )
    return None


def accept_document(collect: synth.Collector, completion: Completion, doc_id: str, **fields: Any) -> None:
    reason = check_document(completion)
    if reason:
        collect.reject(completion.key, doc_id, reason, completion.text)
        return
    text = completion.text.strip()
    if collect.accept(completion, doc_id, unique=text, **fields, text=text) and completion.finish_reason == "length":
        collect.counts["accepted_truncated"] += 1


def produce(run: Any) -> synth.Outcome:
    name = run.ctx.axes["generator"]
    if name not in NAMES:
        raise ValueError(f"synth_docs.generators: unknown generator {name!r}; available: {list(NAMES)}")
    return importlib.import_module(f"smt.generators.{name}").produce(run)
