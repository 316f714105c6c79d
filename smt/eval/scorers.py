"""The scorers. Multiple choice: `letter` (the options listed with letters, the likeliest letter wins),
`option_loglik` (each option's text scored as the answer to the bare question) and `generate` (k-shot chain of
thought, the letter parsed from `Answer: X.`); free-form answers graded by a judge (`judge`). Each returns one
record per question, and says where it ran (device, dtype) for the score file.

Every scorer takes plain arguments: the model (its folder, chat-template variables, device, dtype, batch size),
the questions, each question as the model sees it (framed with its document's title, author and year), the
retrieved excerpts per question (empty closed-book), and its decoding settings. Scoring runs on the job's GPU in
bfloat16 where it supports it (smt.inference), batched across questions; generated answers and the judge run on
a generation backend (transformers, or vLLM at scale) over every GPU the job holds.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from tqdm import tqdm

from smt import faults, inference
from smt.eval import answering, letter, option_loglik
from smt.synth.backends import make_backend
from smt.synth.generation import BackendSettings, Request, Sampling, item_seed

SCORERS = ("letter", "option_loglik", "generate")  # multiple choice; free-form questions always use the judge
VLLM_DEFAULTS = {"tensor_parallel_size": 0, "gpu_memory_utilization": 0.9, "max_model_len": 0, "batch_invariant": False}

Records = list[dict[str, Any]]


@dataclass(frozen=True)
class Model:
    """A model as a scorer runs it: its folder, chat-template variables and where and how it runs."""

    path: str
    chat: dict[str, Any] = field(default_factory=dict)
    dtype: str = "auto"  # eval.dtype
    batch_size: int = 8
    backend: str = "transformers"  # generated answers: transformers | vllm

    def load(self) -> tuple[Any, Any]:
        device, dtype = inference.pick(self.dtype)
        return inference.load_causal_lm(self.path, device, dtype)

    def generator(self) -> Any:
        settings = BackendSettings(
            self.backend,
            self.path,
            self.dtype,
            self.batch_size,
            vllm={**VLLM_DEFAULTS, "batch_size": self.batch_size},
            chat_template_kwargs=self.chat,
        )
        return make_backend(settings)


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


def _texts(passages: list[dict[str, Any]]) -> list[str]:
    return [h["text"] for h in passages]


def _choice_record(q: dict[str, Any], p: list, best: int, scores: list[float], tie: bool) -> dict[str, Any]:
    return {
        **base_record(q, p),
        "predicted": chr(65 + best),
        "correct": best == q["answer_index"],
        "scores": [round(v, 6) for v in scores],
        "tie": tie,
    }


def score_letter(
    model: Model, questions: Records, framed: list[str], passages: list[list]
) -> tuple[Records, dict[str, Any]]:
    """The letter with the most probability after the question and its lettered options (chance: 1/k)."""
    lm, tokenizer = model.load()
    items = [
        (letter.build_prompt(tokenizer, f, q["options"], _texts(p), model.chat), len(q["options"]))
        for q, f, p in zip(questions, framed, passages, strict=True)
    ]
    scored = letter.score_prompts(lm, tokenizer, items, model.batch_size)
    records = []
    for q, p, s in zip(questions, passages, tqdm(scored, desc="letter", unit="q"), strict=True):
        records.append({**_choice_record(q, p, s.best, s.scores, s.tie), "letter_mass": round(s.letter_mass, 6)})
        faults.point("eval.question")
    return records, inference.describe(lm)


def score_option_loglik(
    model: Model, questions: Records, framed: list[str], passages: list[list]
) -> tuple[Records, dict[str, Any]]:
    """Each option's mean log-probability as the answer; the likeliest wins (a tie goes to the first, flagged).
    One question at a time on a CPU (as measured fastest there); across questions on a GPU."""
    lm, tokenizer = model.load()
    items = [
        (option_loglik.build_prompt(tokenizer, f, _texts(p), model.chat), q["options"])
        for q, f, p in zip(questions, framed, passages, strict=True)
    ]
    where = inference.describe(lm)
    if where["device"].startswith("cuda"):
        scored = iter(option_loglik.score_across_questions(lm, tokenizer, items, model.batch_size))
    else:
        scored = option_loglik.score_questions(lm, tokenizer, items, model.batch_size)
    records = []
    for q, p, s in zip(
        questions, passages, tqdm(scored, total=len(items), desc="option_loglik", unit="q"), strict=True
    ):
        records.append(_choice_record(q, p, s.best, s.scores, s.tie))
        faults.point("eval.question")
    return records, where


@dataclass(frozen=True)
class Decoding:
    """How answers are generated: new tokens at most, and sampling (temperature 0 = greedy; above 0 every question
    samples with its own seed, derived from `seed` and its id)."""

    max_new_tokens: int
    temperature: float = 0.0
    top_p: float = 1.0
    seed: int = 0

    def sampling(self) -> Sampling:
        return Sampling(self.temperature, self.top_p, self.max_new_tokens)

    def seed_of(self, key: str, step: str) -> int:
        return item_seed(self.seed, key, step)


def generate(backend: Any, requests: list[Request], sampling: Sampling, desc: str) -> dict[str, Any]:
    """Completions by key; one that was refused (too long for the model) is an empty answer with its reason."""
    return {c.key: c for c in backend.generate(requests, sampling, desc=desc)}


def score_generated_choice(
    model: Model,
    questions: Records,
    framed: list[str],
    passages: list[list],
    decoding: Decoding,
    shots: list[dict[str, Any]],
    desc: str,
) -> tuple[Records, dict[str, Any]]:
    """k-shot chain of thought, then `Answer: X.`; no parseable letter is counted as unparseable."""
    requests = [
        answering.mc_request(
            q["question_id"], f, q["options"], _texts(p), shots, decoding.seed_of(q["question_id"], "mc_cot")
        )
        for q, f, p in zip(questions, framed, passages, strict=True)
    ]
    backend = model.generator()
    outputs = generate(backend, requests, decoding.sampling(), desc)
    records = []
    for q, p in zip(questions, passages, strict=True):
        completion = outputs[q["question_id"]]
        choice = answering.parse_choice(completion.text, len(q["options"]))
        record = {
            **base_record(q, p),
            "predicted": choice,
            "correct": choice == q["answer"],
            "unparseable": choice is None,
            "output": completion.text,
        }
        if completion.error:
            record["refused"] = completion.error
        records.append(record)
    return records, _backend_place(backend)


def _backend_place(backend: Any) -> dict[str, Any]:
    """Where a generation backend ran: its device (a pool names its engines' GPUs), dtype and name."""
    info = backend.describe()
    device = info.get("device") or ("cuda " + ";".join(info["devices"]) if info.get("devices") else "cuda")
    return {"device": device, "dtype": info.get("dtype"), "backend": info.get("name")}


def score_free_form(
    model: Model,
    judge: Model,
    questions: Records,
    framed: list[str],
    passages: list[list],
    decoding: Decoding,
    desc: str,
) -> tuple[Records, dict[str, Any]]:
    """The model answers; the judge grades each answer against the gold one; numbers are also compared."""
    requests = [
        answering.answer_request(q["question_id"], f, _texts(p))
        for q, f, p in zip(questions, framed, passages, strict=True)
    ]
    sampling = Sampling(0.0, 1.0, decoding.max_new_tokens)
    answerer = model.generator()
    answers = {k: c.text for k, c in generate(answerer, requests, sampling, f"answering {desc}").items()}
    where = _backend_place(answerer)
    del answerer
    verdict_requests = [
        answering.judge_request(q["question_id"], q["question"], q["answer"], answers[q["question_id"]])
        for q in questions
    ]
    grader = judge.generator()
    verdicts = {k: c.text for k, c in generate(grader, verdict_requests, sampling, f"judging {desc}").items()}
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
    return records, {**where, "judge": _backend_place(grader)}


def prompt_names(scorer: str) -> list[str]:
    """The prompt files a scorer uses (their hashes go into every score file)."""
    return {
        "letter": [letter.PROMPT],
        "option_loglik": [option_loglik.PROMPT, option_loglik.CONTEXT_PROMPT],
        "generate": [answering.MC_PROMPT],
        "judge": [answering.ANSWER_PROMPT, answering.JUDGE_PROMPT],
    }[scorer]
