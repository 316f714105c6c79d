"""Generation throughput of the transformers backend: tokens/s at batch 1, 8 and 32, float32 and bfloat16.

Every request is a real synthetic-QA prompt over a demo document (the embedded default model, no download); the
baseline of each ratio is batch 1 in float32, measured in the same run.

    python bench/generation.py [--model results/models/base] [--batches 1 8 32] [--new-tokens 64]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import results_file
import torch

from smt import prompts
from smt.generation import Request, Sampling, TransformersBackend

ROOT = Path(__file__).resolve().parents[1]


def requests(n: int) -> list[Request]:
    docs = [json.loads(line) for line in (ROOT / "smt/benchmarks/demo/documents.jsonl").open()]
    template = prompts.load("synth_qa")
    return [
        Request(f"r{i}", [{"role": "user", "content": template.format(document=docs[i % len(docs)]["text"])}], i)
        for i in range(n)
    ]


def measure(model: str, dtype: str, batch: int, new_tokens: int, rounds: int) -> dict[str, Any]:
    backend = TransformersBackend(model, dtype=dtype, batch_size=batch)
    sampling = Sampling(1.0, 1.0, new_tokens)
    backend.generate(requests(batch), Sampling(1.0, 1.0, 4), desc="warm-up")
    backend.stats = type(backend.stats)()
    started = time.perf_counter()
    done = backend.generate(requests(batch * rounds), sampling, desc=f"{dtype} batch {batch}")
    seconds = time.perf_counter() - started
    generated = sum(c.completion_tokens for c in done)
    prompt = sum(c.prompt_tokens for c in done)
    return {
        "dtype": dtype,
        "batch": batch,
        "requests": len(done),
        "generated_tokens": generated,
        "prompt_tokens": prompt,
        "seconds": seconds,
        "generated_tokens_per_s": generated / seconds,
        "device": backend.device,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default=str(ROOT / "results/models/base"))
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument("--dtypes", nargs="+", default=["float32", "bfloat16"])
    parser.add_argument("--new-tokens", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=2, help="batches per measurement")
    parser.add_argument("--out", default=str(ROOT / "bench/results/generation.json"))
    args = parser.parse_args()
    rows = [measure(args.model, d, b, args.new_tokens, args.rounds) for d in args.dtypes for b in args.batches]
    baseline = next(r for r in rows if r["batch"] == min(args.batches) and r["dtype"] == args.dtypes[0])
    print(f"{'dtype':>9} {'batch':>5} {'tokens/s':>10} {'vs baseline':>12}")
    for r in rows:
        r["ratio_to_baseline"] = r["generated_tokens_per_s"] / baseline["generated_tokens_per_s"]
        print(f"{r['dtype']:>9} {r['batch']:>5} {r['generated_tokens_per_s']:>10.1f} {r['ratio_to_baseline']:>11.2f}x")
    result = {
        "versions": {"torch": torch.__version__},
        "model": args.model,
        "new_tokens": args.new_tokens,
        "baseline": f"batch {baseline['batch']} {baseline['dtype']}",
        "rows": rows,
    }
    results_file.write(args.out, result)


if __name__ == "__main__":
    main()
