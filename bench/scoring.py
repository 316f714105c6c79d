"""Scoring throughput of the `letter` scorer (smt.eval.letter) against a bare forward loop on the same batches.

The 80 demo questions, closed-book and with two excerpts of their document as context (about the prompt the RAG
conditions build from `rag.top_k: 2` chunks of 600 characters), scored by the embedded student at `eval.batch_size`
questions per pass, in float32 and, where this device has fast bfloat16 (a GPU that supports it, a CPU with
AMX-BF16: what `eval.dtype: auto` picks), in bfloat16. Beside each: the bare loop (the same left-padded batches
through the model, last position only, nothing else: the floor the scorer's own work adds to) and batch 1 (no
padding). Questions/s and prompt tokens/s; `ratio_to_bare` is the scorer's questions/s over the bare loop's.

    python bench/scoring.py [--model results/models/base/smollm2] [--batch 8] [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import results_file
import torch
import yaml

from smt import inference
from smt.eval import letter
from smt.eval.framing import framed_question

ROOT = Path(__file__).resolve().parents[1]
PARAMS = yaml.safe_load((ROOT / "params.yaml").read_text())


def prompts(tokenizer: Any, context: bool) -> list[tuple[str, int]]:
    """(prompt, options) of every demo question; with `context`, the first two 600-character excerpts of its
    document before the question."""
    docs = {d["doc_id"]: d for d in map(json.loads, (ROOT / "smt/benchmarks/demo/documents.jsonl").open())}
    items = []
    for q in map(json.loads, (ROOT / "smt/benchmarks/demo/questions.jsonl").open()):
        doc = docs[q["doc_id"]]
        excerpts = [doc["text"][i : i + 600] for i in (0, 500)] if context else []
        prompt = letter.build_prompt(tokenizer, framed_question(q["question"], doc), q["options"], excerpts)
        items.append((prompt, len(q["options"])))
    return items


def timed(run: Any, repeats: int) -> float:
    """The fastest of `repeats` runs after a warm-up (allocator, kernels): the least disturbed by other work."""
    run()
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        run()
        times.append(time.perf_counter() - started)
    return min(times)


def measure(model: Any, tokenizer: Any, items: list[tuple[str, int]], batch: int, repeats: int) -> dict[str, Any]:
    order = sorted(items, key=lambda item: -len(item[0]))
    batches = [[p for p, _ in order[i : i + batch]] for i in range(0, len(order), batch)]
    tokens = sum(len(tokenizer(p, add_special_tokens=False).input_ids) for p, _ in items)
    bare = timed(lambda: [inference.next_token_logprobs(model, tokenizer, b) for b in batches], repeats)
    scorer = timed(lambda: letter.score_prompts(model, tokenizer, items, batch), repeats)
    single = timed(lambda: letter.score_prompts(model, tokenizer, items, 1), 1)
    return {
        "questions": len(items),
        "prompt_tokens": tokens,
        "batch": batch,
        "scorer_seconds": scorer,
        "bare_seconds": bare,
        "batch_1_seconds": single,
        "questions_per_s": len(items) / scorer,
        "prompt_tokens_per_s": tokens / scorer,
        "ratio_to_bare": bare / scorer,
        "ratio_to_batch_1": single / scorer,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default=str(ROOT / "results/models/base/smollm2"))
    parser.add_argument("--batch", type=int, default=PARAMS["eval"]["batch_size"])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", default=str(ROOT / "bench/results/scoring.json"))
    args = parser.parse_args()
    cuda = torch.cuda.is_available()
    dtypes = ["float32", *(["bfloat16"] if inference.fast_bf16(cuda) else [])]
    rows = []
    for dtype in dtypes:
        model, tokenizer = inference.load_causal_lm(args.model, "cuda" if cuda else "cpu", dtype)
        for context in (False, True):
            row = measure(model, tokenizer, prompts(tokenizer, context), args.batch, args.repeats)
            rows.append({"dtype": dtype, "context": context, **row})
    print(f"{'dtype':>9} {'context':>7} {'questions/s':>11} {'tokens/s':>9} {'scorer/bare':>11} {'vs batch 1':>10}")
    for r in rows:
        print(f"{r['dtype']:>9} {r['context']!s:>7} {r['questions_per_s']:>11.2f} {r['prompt_tokens_per_s']:>9.0f} "
              f"{r['ratio_to_bare']:>10.2f}x {r['ratio_to_batch_1']:>9.2f}x")  # fmt: skip
    results_file.write(args.out, {"model": args.model, "rows": rows})


if __name__ == "__main__":
    main()
