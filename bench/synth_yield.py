"""What the embedded generator (SmolLM2-135M) can give the synthetic-QA stream: accepted tokens per generated token,
pairs accepted per request and the reasons for the rest, for a few sampling settings and pairs asked per request;
and how grounded the accepted answers are in their document: the share of an answer's words (numbers and words of
four letters or more) that occur in the document, and the share of answers of which at least 80% do. A pair the
parser accepts can still be invented: an answer made of words its document never uses cannot teach its facts.

The rounds (smt.synth.rounds) ask until every document holds its share of the stream's target, so a low yield
costs generation time in proportion: a setting that keeps twice as many of its tokens halves the QA stage. Each
setting runs the real generator (prompt, parsing, rejection) once over every demo document, `--requests` requests
per document, one round, through the transformers backend at the project's batch size.

    python bench/synth_yield.py [--requests 4] [--settings 1.0,1.0,3 0.7,0.95,1 0.3,1.0,3,128 ...]

A setting is temperature,top_p,pairs_per_request[,max_new_tokens] (default: params.yaml's synth_qa.max_new_tokens).
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import time
from collections import Counter
from pathlib import Path
from typing import Any

import results_file
import yaml

from smt.synth.backends.transformers import TransformersBackend
from smt.synth.generation import BackendSettings, Completion, Request, Sampling
from smt.synth.generators import qa
from smt.synth.job import Job

ROOT = Path(__file__).resolve().parents[1]
PARAMS = yaml.safe_load((ROOT / "params.yaml").read_text())
# temperature, top_p, pairs per request[, max_new_tokens]: the paper's sampling, the documents' sampling, and the
# default's (0.3), whose completions run to 256 tokens more often than not (repeated pairs): cut at 128 instead.
SETTINGS = ["1.0,1.0,3", "0.7,0.95,3", "0.5,1.0,3", "0.3,1.0,3,256", "0.3,1.0,3,128", "0.3,1.0,1,96"]


GROUNDED = 0.8  # share of an answer's words found in its document above which the answer counts as grounded


def words(text: str) -> set[str]:
    """The words that carry content: numbers and words of four letters or more, lowercased."""
    return {w for w in re.findall(r"[a-z0-9]+", text.lower()) if w.isdigit() or len(w) >= 4}


def grounding(answer: str, document: str) -> float:
    """Share of the answer's content words that occur in the document (1.0 for an answer with none)."""
    said = words(answer)
    return len(said & words(document)) / len(said) if said else 1.0


def measure(backend: TransformersBackend, docs: list[dict[str, Any]], setting: str, requests: int) -> dict[str, Any]:
    temperature, top_p, per_request, *limit = setting.split(",")
    max_new_tokens = int(limit[0]) if limit else PARAMS["synth_qa"]["max_new_tokens"]
    generated: Counter[str] = Counter()

    def complete(batch: list[Request], sampling: Sampling, step: str) -> list[Completion]:
        done = backend.generate(batch, sampling, desc=f"{step} {setting}")
        generated["tokens"] += sum(c.completion_tokens for c in done)
        generated["requests"] += len(done)
        return done

    job = Job(
        documents=docs,
        seed=PARAMS["seed"],
        options={"per_request": int(per_request), "per_document": requests},
        temperature=float(temperature),
        top_p=float(top_p),
        max_new_tokens=max_new_tokens,
        complete=complete,
    )
    started = time.perf_counter()
    outcome = qa.produce(job)
    seconds = time.perf_counter() - started
    accepted = sum(len(backend.tokenizer(f"{r['question']} {r['answer']}").input_ids) for r in outcome.records)
    texts = {d["doc_id"]: d["text"] for d in docs}
    grounded = [grounding(r["answer"], texts[r["doc_id"]]) for r in outcome.records]
    return {
        "temperature": float(temperature),
        "top_p": float(top_p),
        "pairs_per_request": int(per_request),
        "max_new_tokens": max_new_tokens,
        "requests": generated["requests"],
        "generated_tokens": generated["tokens"],
        "accepted_pairs": len(outcome.records),
        "accepted_tokens": accepted,
        "yield": accepted / max(generated["tokens"], 1),
        "pairs_per_request_accepted": len(outcome.records) / max(generated["requests"], 1),
        "answer_words_in_document": statistics.fmean(grounded) if grounded else None,
        "grounded_answers": sum(g >= GROUNDED for g in grounded) / len(grounded) if grounded else None,
        "rejected_by_reason": dict(Counter(r["reason"].split(":")[0] for r in outcome.rejected)),
        "seconds": seconds,
        "generated_tokens_per_s": generated["tokens"] / seconds,
        "accepted_tokens_per_s": accepted / seconds,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default=str(ROOT / "results/models/base/smollm2"))
    parser.add_argument("--requests", type=int, default=4, help="requests per document per setting")
    parser.add_argument(
        "--settings", nargs="+", default=SETTINGS, help="temperature,top_p,pairs_per_request[,max_new_tokens]"
    )
    parser.add_argument("--out", default=str(ROOT / "bench/results/synth_yield.json"))
    args = parser.parse_args()
    docs = [json.loads(line) for line in (ROOT / "smt/benchmarks/demo/documents.jsonl").open()]
    batch = PARAMS["generation"]["batch_size"]
    settings = BackendSettings("transformers", args.model, PARAMS["generation"]["dtype"], batch).resolved()
    backend = TransformersBackend(args.model, dtype=settings.dtype, batch_size=batch)
    rows = [measure(backend, docs, setting, args.requests) for setting in args.settings]
    print(f"{'temp':>5} {'top_p':>5} {'asked':>5} {'max new':>7} {'requests':>8} {'generated':>9} {'accepted':>8} "
          f"{'yield':>6} {'pairs/req':>9} {'accepted tok/s':>14} {'grounded':>8}")  # fmt: skip
    for r in rows:
        print(f"{r['temperature']:>5} {r['top_p']:>5} {r['pairs_per_request']:>5} {r['max_new_tokens']:>7} "
              f"{r['requests']:>8} "
              f"{r['generated_tokens']:>9} {r['accepted_tokens']:>8} {r['yield']:>6.2f} "
              f"{r['pairs_per_request_accepted']:>9.2f} {r['accepted_tokens_per_s']:>14.1f} "
              f"{r['grounded_answers'] or 0:>8.2f}")  # fmt: skip
    results_file.write(
        args.out,
        {
            "model": args.model,
            "documents": len(docs),
            "batch_size": batch,
            "dtype": settings.dtype,
            "rows": rows,
        },
    )


if __name__ == "__main__":
    main()
