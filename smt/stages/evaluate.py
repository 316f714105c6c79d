"""Score a model on a benchmark, closed-book or with retrieved excerpts.

One implementation serves the four evaluation stages; the condition (e.g. `smt_rag`) comes from the stage
name, and only the RAG conditions read the retrieve stage's hits. Multiple-choice questions are scored by
option log-likelihood (`eval.scorer: loglik`) or by a generated chain of thought ending in `Answer: X.`
(`generate`); free-form questions are answered in words and graded by an LLM judge, with a numeric check
beside it. Every score carries a bootstrap 95% interval; per-question predictions go to a separate file.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import polars as pl
from tqdm import tqdm

from smt import answering, io, prompts, scoring, stats
from smt.backends.transformers import TransformersBackend
from smt.benchmarks.tables import FREE_FORM, MULTIPLE_CHOICE
from smt.context import StageContext
from smt.framing import framed_question
from smt.generation import Request, Sampling

# The model is a local folder; never let a load fall back to a hub.
os.environ["HF_HUB_OFFLINE"] = "1"

SCORERS = ("loglik", "generate")
GREEDY_TEMPERATURE = 0.0


def condition(ctx: StageContext) -> str:
    return ctx.stage.name.removeprefix("eval_")


def is_rag(ctx: StageContext) -> bool:
    return "hits" in ctx.stage.inputs


def load_questions(path: str, limit: int) -> list[dict[str, Any]]:
    """Questions ordered by question_id; limit > 0 keeps the first `limit`. A benchmark is all multiple choice
    or all free-form: one scorer reads all of its questions."""
    table = pl.read_parquet(path).sort("question_id")
    kinds = sorted(set(table["kind"]))
    if len(kinds) != 1:
        raise ValueError(f"{path}: questions of several kinds {kinds}; one benchmark must have one kind")
    if table.is_empty():
        raise ValueError(f"{path}: no questions to evaluate")
    return table.head(limit).to_dicts() if limit else table.to_dicts()


def load_documents(path: str) -> dict[str, dict[str, Any]]:
    return {d["doc_id"]: d for d in pl.read_parquet(path).to_dicts()}


def load_hits(path: str) -> dict[str, list[dict[str, Any]]]:
    return {r["question_id"]: r["hits"] for r in io.read_jsonl(path)}


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


def base_record(question: dict[str, Any], passages: list[dict[str, Any]]) -> dict[str, Any]:
    record = {
        "question_id": question["question_id"],
        "doc_id": question["doc_id"],
        "status": question["status"],
        "gold": question["answer"],
    }
    if passages:
        record["retrieved"] = [h["chunk_id"] for h in passages]
    return record


# ------------------------------------------------------------------------------------------- multiple choice


def score_loglik(
    ctx: StageContext, model_path: str, questions: list[dict[str, Any]], framed: list[str], passages: list[list]
) -> list[dict[str, Any]]:
    """Each option's mean log-probability as the answer; the likeliest wins (a tie goes to the first, flagged)."""
    model, tokenizer = load_model(model_path)
    items = [
        (scoring.build_prompt(tokenizer, f, [h["text"] for h in p]), q["options"])
        for q, f, p in zip(questions, framed, passages, strict=True)
    ]
    scored = scoring.score_questions(model, tokenizer, items, ctx.p("eval.batch_size"))
    records = []
    for q, p, s in zip(questions, passages, tqdm(scored, total=len(items), desc="scoring", unit="q"), strict=True):
        records.append(
            {
                **base_record(q, p),
                "predicted": chr(65 + s.best),
                "correct": s.best == q["answer_index"],
                "scores": [round(v, 6) for v in s.scores],
                "tie": s.tie,
            }
        )
    return records


def generate(ctx: StageContext, model_path: str, requests: list[Request], desc: str) -> dict[str, str]:
    """Greedy completions by key."""
    backend = TransformersBackend(model_path, dtype="float32", batch_size=ctx.p("eval.batch_size"))
    sampling = Sampling(GREEDY_TEMPERATURE, 1.0, ctx.p("eval.max_new_tokens"))
    return {c.key: c.text for c in backend.generate(requests, sampling, desc=desc)}


def score_generated_choice(
    ctx: StageContext, model_path: str, questions: list[dict[str, Any]], framed: list[str], passages: list[list]
) -> list[dict[str, Any]]:
    """Chain of thought, then `Answer: X.`; no parseable letter = wrong, and counted as unparseable."""
    requests = [
        answering.mc_request(q["question_id"], f, q["options"], [h["text"] for h in p])
        for q, f, p in zip(questions, framed, passages, strict=True)
    ]
    outputs = generate(ctx, model_path, requests, f"answering {ctx.benchmark}")
    records = []
    for q, p in zip(questions, passages, strict=True):
        text = outputs[q["question_id"]]
        letter = answering.parse_choice(text, len(q["options"]))
        records.append(
            {
                **base_record(q, p),
                "predicted": letter,
                "correct": letter == q["answer"],
                "unparseable": letter is None,
                "output": text,
            }
        )
    return records


# ------------------------------------------------------------------------------------------------ free-form


def judge_path(ctx: StageContext) -> str:
    return ctx.p("eval.judge_model") or ctx.input("judge")


def score_free_form(
    ctx: StageContext, model_path: str, questions: list[dict[str, Any]], framed: list[str], passages: list[list]
) -> list[dict[str, Any]]:
    """The model answers; the judge grades each answer against the gold one; numbers are also compared."""
    requests = [
        answering.answer_request(q["question_id"], f, [h["text"] for h in p])
        for q, f, p in zip(questions, framed, passages, strict=True)
    ]
    answers = generate(ctx, model_path, requests, f"answering {ctx.benchmark}")
    verdict_requests = [
        answering.judge_request(q["question_id"], q["question"], q["answer"], answers[q["question_id"]])
        for q in questions
    ]
    verdicts = generate(ctx, judge_path(ctx), verdict_requests, f"judging {ctx.benchmark}")
    records = []
    for q, p in zip(questions, passages, strict=True):
        qid = q["question_id"]
        verdict = answering.parse_verdict(verdicts[qid])
        records.append(
            {
                **base_record(q, p),
                "answer": answers[qid],
                "verdict": verdicts[qid],
                "correct": verdict is True,
                "unparseable": verdict is None,
                "numeric_match": answering.numeric_match(q["answer"], answers[qid]),
            }
        )
    return records


# ---------------------------------------------------------------------------------------------------- scores


def scorer_name(ctx: StageContext, kind: str) -> str:
    return "judge" if kind == FREE_FORM else ctx.p("eval.scorer")


def prompt_names(scorer: str) -> list[str]:
    return {"generate": [answering.MC_PROMPT], "judge": [answering.ANSWER_PROMPT, answering.JUDGE_PROMPT]}.get(
        scorer, []
    )


def accuracy_block(records: list[dict[str, Any]], resamples: int, seed: int) -> dict[str, Any]:
    outcomes = [bool(r["correct"]) for r in records]
    low, high = stats.bootstrap_ci(outcomes, resamples, seed)
    return {"accuracy": sum(outcomes) / len(outcomes), "ci_low": low, "ci_high": high, "n": len(outcomes)}


def score_summary(ctx: StageContext, records: list[dict[str, Any]], scorer: str, model_path: str) -> dict[str, Any]:
    """The metrics file: accuracy with its 95% interval and n first, then what produced them."""
    resamples, seed = ctx.p("eval.bootstrap_resamples"), ctx.p("seed")
    summary: dict[str, Any] = {
        **accuracy_block(records, resamples, seed),
        "correct": sum(bool(r["correct"]) for r in records),
        "condition": condition(ctx),
        "benchmark": ctx.benchmark,
        "budget": ctx.budget if "budget" in ctx.axes else None,
        "scorer": scorer,
        "prompts": {name: prompts.digest(name) for name in prompt_names(scorer)},
        "model": {"path": model_path, "id": model_id(model_path)},
        "params_fingerprint": ctx.fingerprint,
        "provenance": ctx.provenance(),
    }
    statuses = sorted({r["status"] for r in records})
    if statuses != ["ok"]:
        summary["by_status"] = {
            s: accuracy_block([r for r in records if r["status"] == s], resamples, seed) for s in statuses
        }
    if "unparseable" in records[0]:
        summary["unparseable"] = sum(r["unparseable"] for r in records)
    if "tie" in records[0]:
        summary["ties"] = sum(r["tie"] for r in records)
    if scorer == "judge":
        judge = judge_path(ctx)
        summary["judge_model"] = {"path": judge, "id": model_id(judge)}
        numeric = [r["numeric_match"] for r in records if r["numeric_match"] is not None]
        summary["numeric_match_accuracy"] = sum(numeric) / len(numeric) if numeric else None
        summary["numeric_questions"] = len(numeric)
    if is_rag(ctx):
        summary["retrieval"] = io.read_json(ctx.input("retrieval_report"))
    return summary


def run(ctx: StageContext) -> None:
    questions = load_questions(ctx.input("questions"), ctx.p("eval.max_questions"))
    kind = questions[0]["kind"]
    scorer = scorer_name(ctx, kind)
    if kind == MULTIPLE_CHOICE and scorer not in SCORERS:
        raise ValueError(f"eval.scorer = {scorer!r} is not implemented; available: {list(SCORERS)}")
    docs = load_documents(ctx.input("documents"))
    hits = load_hits(ctx.input("hits")) if is_rag(ctx) else {}
    framed = [framed_question(q["question"], docs.get(q["doc_id"])) for q in questions]
    passages = [hits.get(q["question_id"], []) for q in questions]
    model_path = ctx.input("model")
    ctx.log.info("%s on %s: %d %s questions, %s scorer", condition(ctx), ctx.benchmark, len(questions), kind, scorer)
    started = time.time()
    score = {"loglik": score_loglik, "generate": score_generated_choice, "judge": score_free_form}[scorer]
    records = score(ctx, model_path, questions, framed, passages)
    ctx.log.info("scored %d questions in %.1fs", len(records), time.time() - started)
    io.write_jsonl(ctx.outputs["predictions"], records)
    summary = score_summary(ctx, records, scorer, model_path)
    io.write_json(ctx.outputs["score"], summary)
    ctx.log.info(
        "%s accuracy %.3f [%.3f, %.3f] (n=%d)",
        condition(ctx), summary["accuracy"], summary["ci_low"], summary["ci_high"], summary["n"],
    )  # fmt: skip
