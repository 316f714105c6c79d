"""Training throughput with TRL's SFTTrainer: tokens/s, with and without packing, and model FLOPs utilization.

Models: the embedded student (SmolLM2-135M, results/models/base) and, on GPU (or with --with-1b), a 1B-class
Llama-architecture model with random weights (no download). MFU = 6 N (tokens/s) / the card's peak dense bf16
FLOP/s; on CPU it is not reported. The baseline of each ratio is the same model without packing, same run.

    python bench/training.py [--steps 8] [--max-length 512] [--with-1b]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path
from typing import Any

import results_file
import torch
from datasets import Dataset
from transformers import AutoModelForCausalLM, AutoTokenizer, LlamaConfig, LlamaForCausalLM
from trl import SFTConfig, SFTTrainer

ROOT = Path(__file__).resolve().parents[1]
# Peak dense bf16 tensor FLOP/s by card (vendor datasheets, without sparsity).
PEAK_BF16 = {"H100": 989e12, "H200": 989e12, "A100": 312e12, "L40S": 362e12, "A10G": 125e12, "L4": 121e12}


def peak_flops() -> float | None:
    if not torch.cuda.is_available():
        return None
    name = torch.cuda.get_device_name(0)
    return next((v for k, v in PEAK_BF16.items() if k in name), None)


def texts() -> list[str]:
    docs = [json.loads(line)["text"] for line in (ROOT / "smt/benchmarks/demo/documents.jsonl").open()]
    paragraphs = [p for d in docs for p in d.split("\n\n") if p.strip()]
    return paragraphs * 4


def one_billion(tokenizer: Any) -> Any:
    config = LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=2048, intermediate_size=5632, num_hidden_layers=22,
        num_attention_heads=32, num_key_value_heads=4, max_position_embeddings=4096,
    )  # fmt: skip
    return LlamaForCausalLM(config)


def measure(name: str, model: Any, tokenizer: Any, packing: bool, steps: int, max_length: int, batch: int) -> dict:
    gpu = torch.cuda.is_available()
    with tempfile.TemporaryDirectory() as out:
        args = SFTConfig(
            output_dir=out, max_length=max_length, packing=packing, packing_strategy="wrapped",
            per_device_train_batch_size=batch, max_steps=steps, learning_rate=1e-5, logging_steps=1,
            save_strategy="no", report_to=[], bf16=gpu and torch.cuda.is_bf16_supported(), use_cpu=not gpu,
            disable_tqdm=True, dataset_text_field="text",
        )  # fmt: skip
        trainer = SFTTrainer(model=model, args=args, train_dataset=Dataset.from_list([{"text": t} for t in texts()]),
                             processing_class=tokenizer)  # fmt: skip
        started = time.perf_counter()
        trainer.train()
        seconds = time.perf_counter() - started
        tokens = int(max(h.get("num_tokens", 0) for h in trainer.state.log_history))  # non-padding tokens seen
    n = sum(p.numel() for p in model.parameters())
    rate = tokens / seconds
    peak = peak_flops()
    return {
        "model": name, "parameters": n, "packing": packing, "steps": steps, "max_length": max_length,
        "batch": batch, "tokens": tokens, "seconds": seconds, "tokens_per_s": rate,
        "mfu": 6 * n * rate / peak if peak else None,
    }  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default=str(ROOT / "results/models/base"))
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--max-length", type=int, default=512)
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--with-1b", action="store_true", help="also the 1B random Llama (default on GPU)")
    parser.add_argument("--out", default=str(ROOT / "bench/results/training.json"))
    args = parser.parse_args()
    tokenizer = AutoTokenizer.from_pretrained(args.model)
    rows = []
    for packing in (False, True):
        model = AutoModelForCausalLM.from_pretrained(args.model, dtype=torch.float32)
        rows.append(measure("SmolLM2-135M", model, tokenizer, packing, args.steps, args.max_length, args.batch))
    if args.with_1b or torch.cuda.is_available():
        for packing in (False, True):
            rows.append(measure("Llama-1.1B (random)", one_billion(tokenizer), tokenizer, packing, args.steps,
                                args.max_length, args.batch))  # fmt: skip
    print(f"{'model':>20} {'packing':>7} {'tokens/s':>10} {'vs no packing':>14} {'MFU':>6}")
    for r in rows:
        base = next(b for b in rows if b["model"] == r["model"] and not b["packing"])
        r["ratio_to_no_packing"] = r["tokens_per_s"] / base["tokens_per_s"]
        mfu = f"{100 * r['mfu']:.1f}%" if r["mfu"] is not None else "n/a"
        ratio = r["ratio_to_no_packing"]
        print(f"{r['model']:>20} {r['packing']!s:>7} {r['tokens_per_s']:>10.1f} {ratio:>13.2f}x {mfu:>6}")
    result = {
        "peak_bf16_flops": peak_flops(),
        "versions": {"torch": torch.__version__},
        "rows": rows,
    }
    results_file.write(args.out, result)


if __name__ == "__main__":
    main()
