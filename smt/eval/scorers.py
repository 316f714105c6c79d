"""The scorers: multiple choice by option likelihood (`loglik`) or by a generated chain of thought
(`generate`), and free-form answers graded by a judge (`judge`). Each returns one record per question.

Every scorer takes plain arguments: the model folder, the questions, each question as the model sees it
(framed with its document's title, author and year), the retrieved excerpts per question (empty closed-book),
and its decoding settings.
"""

from __future__ import annotations

from typing import Any

from tqdm import tqdm

from smt import faults
from smt.eval import answering, scoring
from smt.synth.backends.transformers import TransformersBackend
from smt.synth.generation import Request, Sampling

SCORERS = ("loglik", "generate")  # multiple choice; free-form questions always use the judge
GREEDY_TEMPERATURE = 0.0


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


def load_model(path: str) -> tuple[Any, Any]:
    """Causal LM (float32, eval mode) and its tokenizer from a Hugging Face folder, on the job's GPU if it holds
    one (the profiles give every scoring job one), else on the CPU."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32, local_files_only=True)
    return model.to("cuda" if torch.cuda.is_available() else "cpu").eval(), tokenizer


def generate(model_path: str, requests: list[Request], batch_size: int, max_new_tokens: int, desc: str) -> dict:
    """Greedy completions by key."""
    backend = TransformersBackend(model_path, dtype="float32", batch_size=batch_size)
    sampling = Sampling(GREEDY_TEMPERATURE, 1.0, max_new_tokens)
    return {c.key: c.text for c in backend.generate(requests, sampling, desc=desc)}


def score_loglik(
    model_path: str, questions: list[dict[str, Any]], framed: list[str], passages: list[list], batch_size: int
) -> list[dict[str, Any]]:
    """Each option's mean log-probability as the answer; the likeliest wins (a tie goes to the first, flagged)."""
    model, tokenizer = load_model(model_path)
    items = [
        (scoring.build_prompt(tokenizer, f, [h["text"] for h in p]), q["options"])
        for q, f, p in zip(questions, framed, passages, strict=True)
    ]
    scored = scoring.score_questions(model, tokenizer, items, batch_size)
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
        faults.point("eval.question")
    return records


def score_generated_choice(
    model_path: str,
    questions: list[dict[str, Any]],
    framed: list[str],
    passages: list[list],
    batch_size: int,
    max_new_tokens: int,
    desc: str,
) -> list[dict[str, Any]]:
    """Chain of thought, then `Answer: X.`; no parseable letter = wrong, and counted as unparseable."""
    requests = [
        answering.mc_request(q["question_id"], f, q["options"], [h["text"] for h in p])
        for q, f, p in zip(questions, framed, passages, strict=True)
    ]
    outputs = generate(model_path, requests, batch_size, max_new_tokens, desc)
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


def score_free_form(
    model_path: str,
    judge_path: str,
    questions: list[dict[str, Any]],
    framed: list[str],
    passages: list[list],
    batch_size: int,
    max_new_tokens: int,
    desc: str,
) -> list[dict[str, Any]]:
    """The model answers; the judge grades each answer against the gold one; numbers are also compared."""
    requests = [
        answering.answer_request(q["question_id"], f, [h["text"] for h in p])
        for q, f, p in zip(questions, framed, passages, strict=True)
    ]
    answers = generate(model_path, requests, batch_size, max_new_tokens, f"answering {desc}")
    verdict_requests = [
        answering.judge_request(q["question_id"], q["question"], q["answer"], answers[q["question_id"]])
        for q in questions
    ]
    verdicts = generate(judge_path, verdict_requests, batch_size, max_new_tokens, f"judging {desc}")
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


def prompt_names(scorer: str) -> list[str]:
    """The prompt files a scorer uses (their hashes go into every score file)."""
    return {
        "loglik": [scoring.PROMPT, scoring.CONTEXT_PROMPT],
        "generate": [answering.MC_PROMPT],
        "judge": [answering.ANSWER_PROMPT, answering.JUDGE_PROMPT],
    }[scorer]
