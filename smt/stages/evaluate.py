"""Stages eval_<condition>: score a model on a benchmark, closed-book or with retrieved excerpts.

One adapter serves the four evaluation stages; the condition (e.g. `smt_rag`) comes from the stage name, and
only the RAG conditions read the retrieve stage's hits. The scorers are in smt/eval/scorers.py; every score
carries a bootstrap 95% interval, and per-question predictions go to a separate file.
"""

from __future__ import annotations

import time

from smt import artifacts, faults, io, prompts
from smt.benchmarks.tables import FREE_FORM, MULTIPLE_CHOICE
from smt.eval import scorers, scores
from smt.eval.framing import framed_question
from smt.eval.questions import load_documents, load_hits, load_questions
from smt.pipeline.context import StageContext


def run(ctx: StageContext) -> None:
    condition = ctx.stage.name.removeprefix("eval_")
    rag = "hits" in ctx.inputs
    questions = load_questions(ctx.input("questions"), ctx.p("eval.max_questions"))
    kind = questions[0]["kind"]
    scorer = "judge" if kind == FREE_FORM else ctx.p("eval.scorer")
    if kind == MULTIPLE_CHOICE and scorer not in scorers.SCORERS:
        raise ValueError(f"eval.scorer = {scorer!r} is not implemented; available: {list(scorers.SCORERS)}")
    docs = load_documents(ctx.input("documents"))
    hits = load_hits(ctx.input("hits")) if rag else {}
    framed = [framed_question(q["question"], docs.get(q["doc_id"])) for q in questions]
    passages = [hits.get(q["question_id"], []) for q in questions]
    model = ctx.input("model")
    judge = ctx.input("judge")
    batch, max_new = ctx.p("eval.batch_size"), ctx.p("eval.max_new_tokens")
    ctx.log.info("%s on %s: %d %s questions, %s scorer", condition, ctx.benchmark, len(questions), kind, scorer)
    started = time.time()
    if scorer == "loglik":
        records = scorers.score_loglik(model, questions, framed, passages, batch)
    elif scorer == "generate":
        records = scorers.score_generated_choice(
            model, questions, framed, passages, batch, max_new, f"answering {ctx.benchmark}"
        )
    else:
        records = scorers.score_free_form(model, judge, questions, framed, passages, batch, max_new, ctx.benchmark)
    ctx.log.info("scored %d questions in %.1fs", len(records), time.time() - started)
    io.write_jsonl(ctx.outputs["predictions"], records)
    faults.point("eval.predictions")
    summary = {
        **scores.summarize(records, ctx.p("eval.bootstrap_resamples"), ctx.p("seed")),
        "condition": condition,
        "benchmark": ctx.benchmark,
        "recipe": ctx.axes.get("recipe"),
        "budget": ctx.budget if "budget" in ctx.axes else None,
        "scorer": scorer,
        "prompts": {name: prompts.digest(name) for name in scorers.prompt_names(scorer)},
        "model": {"path": model, "id": artifacts.read_manifest(model).get("model_id")},
        "params_fingerprint": ctx.fingerprint,
        "provenance": ctx.provenance(),
    }
    if scorer == "judge":
        summary["judge_model"] = {"path": judge, "id": artifacts.read_manifest(judge).get("model_id")}
    if rag:
        summary["retrieval"] = io.read_json(ctx.input("retrieval_report"))
    io.write_json(ctx.outputs["score"], summary)
    ctx.log.info(
        "%s accuracy %.3f [%.3f, %.3f] (n=%d)",
        condition, summary["accuracy"], summary["ci_low"], summary["ci_high"], summary["n"],
    )  # fmt: skip
