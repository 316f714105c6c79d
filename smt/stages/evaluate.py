"""Score a model on a benchmark's multiple-choice questions, closed-book or with retrieved excerpts.

One implementation serves the four evaluation stages; the condition (e.g. `smt_rag`) comes from the stage
name, and only the RAG conditions have an index to query.
"""

from __future__ import annotations

import json
import os
import string
import time
from pathlib import Path
from typing import Any

import polars as pl
from tqdm import tqdm

from smt import io, scoring
from smt.benchmarks.tables import MULTIPLE_CHOICE
from smt.context import StageContext

# The model is a local folder; never let a load fall back to a hub.
os.environ["HF_HUB_OFFLINE"] = "1"

SCORERS = ("loglik",)


def condition(ctx: StageContext) -> str:
    return ctx.stage.name.removeprefix("eval_")


def is_rag(ctx: StageContext) -> bool:
    return "index" in ctx.stage.inputs


def load_questions(path: str, limit: int, scorer: str) -> list[dict[str, Any]]:
    """Scorable questions ordered by question_id; limit > 0 keeps the first `limit`. Questions of another kind
    than the scorer handles are an error: a score over a silently filtered set would lie."""
    table = pl.read_parquet(path).sort("question_id")
    other = table.filter(pl.col("kind") != MULTIPLE_CHOICE)
    if other.height:
        raise ValueError(
            f"{path}: eval.scorer {scorer!r} scores multiple-choice questions, but {other.height} questions are "
            f"{sorted(set(other['kind']))} (e.g. {other['question_id'][0]}); free-form answers need a judge scorer"
        )
    blocked = table.filter(pl.col("status") != "ok")
    if blocked.height:
        statuses = sorted(set(blocked["status"]))
        raise ValueError(f"{path}: {blocked.height} questions cannot be scored (status {statuses})")
    return table.head(limit).to_dicts() if limit else table.to_dicts()


def load_documents(path: str) -> dict[str, dict[str, Any]]:
    return {d["doc_id"]: d for d in pl.read_parquet(path).to_dicts()}


def load_model(path: str) -> tuple[Any, Any]:
    """Causal LM (float32, eval mode, CPU) and its tokenizer from a Hugging Face folder."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32, local_files_only=True)
    return model.to("cpu").eval(), tokenizer


def model_id(path: str) -> str | None:
    """The model's id as recorded by the stage that produced the folder, if it did."""
    manifest = Path(path) / "smt_manifest.json"
    return json.loads(manifest.read_text()).get("model_id") if manifest.exists() else None


def rag_query(question: dict[str, Any], doc: dict[str, Any]) -> str:
    """The retrieval query: the question, with the document's title to steer towards the right document."""
    return f"{doc['title']}: {question['question']}"


def retrieve(
    ctx: StageContext, questions: list[dict[str, Any]], docs: dict[str, dict[str, Any]]
) -> list[list[tuple[str, str, float]]]:
    """The top-k chunks for every question (all empty for closed-book conditions)."""
    if not is_rag(ctx):
        return [[] for _ in questions]
    from smt.retrieval import Retriever

    retriever = Retriever.load(ctx.input("index"), ctx.p("rag.embedding_model"))
    method, top_k = ctx.p("rag.retriever"), ctx.p("rag.top_k")
    started = time.time()
    hits = [
        retriever.search(rag_query(q, docs[q["doc_id"]]), method, top_k)
        for q in tqdm(questions, desc="retrieving", unit="q")
    ]
    ctx.log.info("retrieved %s top-%d for %d questions in %.1fs", method, top_k, len(questions), time.time() - started)
    return hits


def prediction(
    question: dict[str, Any], scored: scoring.Scored, hits: list[tuple[str, str, float]], rag: bool
) -> dict[str, Any]:
    letters = string.ascii_uppercase
    record = {
        "question_id": question["question_id"],
        "doc_id": question["doc_id"],
        "gold": question["answer"],
        "predicted": letters[scored.best],
        "correct": scored.best == question["answer_index"],
        "scores": [round(s, 6) for s in scored.scores],
    }
    if rag:
        record["retrieved"] = [chunk_id for chunk_id, _, _ in hits]
    return record


def predict(
    ctx: StageContext,
    model: Any,
    tokenizer: Any,
    questions: list[dict[str, Any]],
    docs: dict[str, dict[str, Any]],
    hits: list[list[tuple[str, str, float]]],
) -> list[dict[str, Any]]:
    """Score every question; returns one prediction record per question, in order."""
    items = []
    for q, q_hits in zip(questions, hits, strict=True):
        doc = docs[q["doc_id"]]
        prompt = scoring.build_prompt(
            tokenizer, q["question"], doc["title"], doc["author"], doc["year"], [text for _, text, _ in q_hits]
        )
        items.append((prompt, q["options"]))
    started = time.time()
    scored = scoring.score_questions(model, tokenizer, items, ctx.p("eval.batch_size"))
    records = [
        prediction(q, s, h, is_rag(ctx))
        for q, h, s in zip(questions, hits, tqdm(scored, total=len(items), desc="scoring", unit="q"), strict=True)
    ]
    elapsed = time.time() - started
    ctx.log.info("scored %d questions in %.1fs (%.2fs/question)", len(records), elapsed, elapsed / max(len(records), 1))
    return records


def score_summary(ctx: StageContext, records: list[dict[str, Any]], model_path: str) -> dict[str, Any]:
    """The metrics file: accuracy, correct and n as the only top-level numbers."""
    correct = sum(r["correct"] for r in records)
    summary: dict[str, Any] = {
        "accuracy": correct / len(records),
        "correct": correct,
        "n": len(records),
        "condition": condition(ctx),
        "benchmark": ctx.benchmark,
        "budget": ctx.budget if "budget" in ctx.axes else None,
        "scorer": ctx.p("eval.scorer"),
        "model": {"path": model_path, "id": model_id(model_path)},
        "params_fingerprint": ctx.fingerprint,
        "provenance": ctx.provenance(),
    }
    if is_rag(ctx):
        summary["retriever"] = {
            "method": ctx.p("rag.retriever"),
            "top_k": ctx.p("rag.top_k"),
            "embedding_model": ctx.p("rag.embedding_model"),
        }
    return summary


def check_condition(ctx: StageContext) -> None:
    """A condition named RAG must have an index to query (and only then); otherwise its score would lie."""
    named_rag = "rag" in condition(ctx).split("_")
    if named_rag != is_rag(ctx):
        raise RuntimeError(
            f"stage {ctx.stage.name}: condition '{condition(ctx)}' is "
            f"{'' if named_rag else 'not '}a RAG condition but the registry gives it "
            f"{'no' if named_rag else 'an'} 'index' input; fix smt/registry.py"
        )


def run(ctx: StageContext) -> None:
    check_condition(ctx)
    scorer = ctx.p("eval.scorer")
    if scorer not in SCORERS:
        raise ValueError(f"eval.scorer = {scorer!r} is not implemented; available: {list(SCORERS)}")
    questions = load_questions(ctx.input("questions"), ctx.p("eval.max_questions"), scorer)
    if not questions:
        raise ValueError(f"{ctx.input('questions')}: no questions to evaluate")
    docs = load_documents(ctx.input("documents"))
    hits = retrieve(ctx, questions, docs)
    model_path = ctx.input("model")
    model, tokenizer = load_model(model_path)
    ctx.log.info("%s on %s: %d questions, model %s", condition(ctx), ctx.benchmark, len(questions), model_path)
    records = predict(ctx, model, tokenizer, questions, docs, hits)
    io.write_jsonl(ctx.outputs["predictions"], records)
    summary = score_summary(ctx, records, model_path)
    io.write_json(ctx.outputs["score"], summary)
    ctx.log.info("%s accuracy %.3f (%d/%d)", condition(ctx), summary["accuracy"], summary["correct"], summary["n"])
