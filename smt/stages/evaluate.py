"""Stages eval_<condition>: score a model on a benchmark, closed-book or with retrieved excerpts.

One adapter serves the four evaluation stages; the condition (e.g. `smt_rag`) comes from the stage name, and
only the RAG conditions read the retrieve stage's hits. The scorers are in smt/eval/scorers.py: `eval.scorer`
makes the score file's accuracy, and every scorer of `eval.extra_scorers` is run on the same questions and
recorded beside it (`scorers`), each with its interval, prompt hashes, device and dtype. Per-question predictions
go to a separate file, one record per question and scorer.
"""

from __future__ import annotations

import time
from typing import Any

from smt import artifacts, faults, io, prompts
from smt.benchmarks.tables import FREE_FORM, MULTIPLE_CHOICE
from smt.eval import answering, scorers, scores
from smt.eval.framing import framed_question
from smt.eval.questions import load_documents, load_hits, load_questions
from smt.pipeline.context import StageContext


def run_scorer(ctx: StageContext, scorer: str, args: tuple) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """One scorer's records and where it ran, plus the hashes of the prompts (and worked examples) it used."""
    model = scorers.Model(
        ctx.input("model"),
        ctx.p("models.${roles.student}.chat_template_kwargs"),
        ctx.p("eval.dtype"),
        ctx.p("eval.batch_size"),
        ctx.p("eval.backend"),
    )
    decoding = scorers.Decoding(
        ctx.p("eval.max_new_tokens"), ctx.p("eval.generate.temperature"), ctx.p("eval.generate.top_p"), ctx.p("seed")
    )
    hashes = {name: prompts.digest(name) for name in scorers.prompt_names(scorer)}
    if scorer == "letter":
        records, where = scorers.score_letter(model, *args)
    elif scorer == "option_loglik":
        records, where = scorers.score_option_loglik(model, *args)
    elif scorer == "generate":
        shots = answering.load_shots(ctx.input("shots"), ctx.p("eval.generate.shots"))
        records, where = scorers.score_generated_choice(model, *args, decoding, shots, f"answering {ctx.benchmark}")
        hashes["shots"] = artifacts.sha256(ctx.input("shots"))[:16]
        where = {**where, "shots": len(shots), "temperature": decoding.temperature, "top_p": decoding.top_p}
    else:
        judge = scorers.Model(
            ctx.input("judge"),
            ctx.p("models.${roles.judge}.chat_template_kwargs"),
            ctx.p("eval.dtype"),
            ctx.p("eval.batch_size"),
            ctx.p("eval.backend"),
        )
        records, where = scorers.score_free_form(model, judge, *args, decoding, ctx.benchmark)
    return records, {**where, "prompts": hashes}


def run(ctx: StageContext) -> None:
    condition = ctx.stage.name.removeprefix("eval_")
    rag = "hits" in ctx.inputs
    questions = load_questions(ctx.input("questions"), ctx.p("eval.max_questions"))
    kind = questions[0]["kind"]
    names = (
        ["judge"] if kind == FREE_FORM else list(dict.fromkeys([ctx.p("eval.scorer"), *ctx.p("eval.extra_scorers")]))
    )
    if kind == MULTIPLE_CHOICE and not set(names) <= set(scorers.SCORERS):
        raise ValueError(f"eval.scorer / eval.extra_scorers = {names}; available: {list(scorers.SCORERS)}")
    docs = load_documents(ctx.input("documents"))
    hits = load_hits(ctx.input("hits")) if rag else {}
    framed = [framed_question(q["question"], docs.get(q["doc_id"])) for q in questions]
    passages = [hits.get(q["question_id"], []) for q in questions]
    resamples, seed = ctx.p("eval.bootstrap_resamples"), ctx.p("seed")
    results: dict[str, dict[str, Any]] = {}
    predictions: list[dict[str, Any]] = []
    for name in names:
        ctx.log.info("%s on %s: %d %s questions, %s scorer", condition, ctx.benchmark, len(questions), kind, name)
        started = time.time()
        records, where = run_scorer(ctx, name, (questions, framed, passages))
        ctx.log.info("%s: scored %d questions in %.1fs on %s (%s)", name, len(records), time.time() - started,
                     where.get("device"), where.get("dtype"))  # fmt: skip
        predictions += [{**r, "scorer": name} for r in records]
        results[name] = {**scores.summarize(records, resamples, seed), **where}  # no wall time: the file is
        # a function of its inputs (a rerun or a resumed run writes the same bytes); the log has the time
        if kind == MULTIPLE_CHOICE:
            results[name]["chance"] = sum(1 / len(q["options"]) for q in questions) / len(questions)
    io.write_jsonl(ctx.outputs["predictions"], predictions)
    faults.point("eval.predictions")
    model, judge, primary = ctx.input("model"), ctx.input("judge"), names[0]
    summary = {
        **results[primary],
        "condition": condition,
        "benchmark": ctx.benchmark,
        "recipe": ctx.axes.get("recipe"),
        "budget": ctx.budget if "budget" in ctx.axes else None,
        "scorer": primary,
        "scorers": results,
        "model": {"path": model, "id": artifacts.read_manifest(model).get("model_id")},
        "chat_template_kwargs": ctx.p("models.${roles.student}.chat_template_kwargs"),
        "params_fingerprint": ctx.fingerprint,
        "provenance": ctx.provenance(),
    }
    if primary == "judge":
        summary["judge_model"] = {"path": judge, "id": artifacts.read_manifest(judge).get("model_id")}
    if rag:
        summary["retrieval"] = io.read_json(ctx.input("retrieval_report"))
    io.write_json(ctx.outputs["score"], summary)
    for name, result in results.items():
        ctx.log.info(
            "%s %s accuracy %.3f [%.3f, %.3f] (n=%d)",
            condition, name, result["accuracy"], result["ci_low"], result["ci_high"], result["n"],
        )  # fmt: skip
