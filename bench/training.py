"""Training throughput with TRL's SFTTrainer: tokens/s, with and without packing, against a bare PyTorch loop on
the same packed batches, and model FLOPs utilization.

Models: the embedded student (SmolLM2-135M, results/models/base) and, on GPU (or with --with-1b), a 1B-class
Llama with random weights from bench/configs/llama-1b.json (no download; the embedded tokenizer). Settings as the
train stage runs them: gradient checkpointing off (TRL turns it on by default), bf16 on a GPU that has it.

Timing: the first --warmup optimizer steps (allocator, kernels' autotuning, dataloader start) are left out; the
clock starts after them and stops after the last step, with one device synchronization at each end and none in
between (no logging inside the timed steps). TRL's SFTTrainer itself reads its token count and metrics once per
micro-step; that is part of what the stage runs, so it stays in.

The bare loop is what the trainer's work costs without the trainer: forward with labels, backward, AdamW step, on
the same model, precision and packed blocks; `ratio_to_bare` is the trainer's tokens/s over the bare loop's. Each
precision this device runs fast is measured (fp32 everywhere; bf16 on a GPU that has it and on a CPU with AMX-BF16,
where the train stage's `precision: auto` picks it).

MFU = exact model FLOPs per token (smt/train/flops.py: attention included, an untied input embedding left out,
the formula recorded in the results) x tokens/s / the GPU's dense bf16 peak, for packed rows (every sequence is
max_length tokens long); the peak is looked up by the exact product name torch reports (an unknown GPU gets no
MFU, and the results say so). The baseline of each ratio is the same model without packing, same run.

    python bench/training.py [--warmup 2] [--steps 6] [--max-length 512] [--batch 2] [--with-1b] [--no-fp32]
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
from transformers import AutoModelForCausalLM, AutoTokenizer, LlamaConfig, LlamaForCausalLM, TrainerCallback
from trl import SFTConfig, SFTTrainer

from smt import inference
from smt.train import compute, flops

ROOT = Path(__file__).resolve().parents[1]
ONE_B = ROOT / "bench/configs/llama-1b.json"


def gpu_name() -> str | None:
    return torch.cuda.get_device_name(0) if torch.cuda.is_available() else None


def texts(tokenizer: Any, tokens_needed: int) -> list[str]:
    """The demo articles' paragraphs, repeated until they hold more tokens than the run consumes."""
    docs = [json.loads(line)["text"] for line in (ROOT / "smt/benchmarks/demo/documents.jsonl").open()]
    paragraphs = [p for d in docs for p in d.split("\n\n") if p.strip()]
    per_pass = sum(len(tokenizer(p).input_ids) + 1 for p in paragraphs)
    return paragraphs * (tokens_needed // per_pass + 2)


def one_billion(config: Path = ONE_B) -> Any:
    return LlamaForCausalLM(LlamaConfig(**json.loads(config.read_text())))


class SteadyClock(TrainerCallback):
    """Wall time and tokens of the optimizer steps after the warm-up, synchronized only at both ends."""

    def __init__(self, warmup: int) -> None:
        self.warmup = warmup
        self.trainer: Any = None
        self.started = self.seconds = 0.0
        self.tokens_at_start = self.tokens = 0

    def _now(self) -> float:
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        return time.perf_counter()

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if state.global_step == self.warmup:
            self.started, self.tokens_at_start = self._now(), self.trainer._total_train_tokens
        elif state.global_step == state.max_steps:
            self.seconds = self._now() - self.started
            self.tokens = self.trainer._total_train_tokens - self.tokens_at_start


def measure(
    name: str,
    model: Any,
    tokenizer: Any,
    packing: bool,
    warmup: int,
    steps: int,
    max_length: int,
    batch: int,
    bf16: bool,
) -> dict[str, Any]:
    gpu = torch.cuda.is_available()
    total = warmup + steps
    dataset = Dataset.from_list([{"text": t} for t in texts(tokenizer, 2 * total * batch * max_length)])
    clock = SteadyClock(warmup)
    with tempfile.TemporaryDirectory() as out:
        args = SFTConfig(
            output_dir=out, max_length=max_length, packing=packing, packing_strategy="wrapped",
            per_device_train_batch_size=batch, max_steps=total, learning_rate=1e-5, logging_steps=total,
            save_strategy="no", report_to=[], bf16=bf16, use_cpu=not gpu, disable_tqdm=True,
            dataset_text_field="text", gradient_checkpointing=False, include_num_input_tokens_seen="no",
        )  # fmt: skip
        trainer = SFTTrainer(
            model=model, args=args, train_dataset=dataset, processing_class=tokenizer, callbacks=[clock]
        )  # fmt: skip
        clock.trainer = trainer
        if packing:  # the last packed block is shorter; without it every sequence is max_length, as the FLOPs assume
            trainer.train_dataset = trainer.train_dataset.filter(lambda row: len(row["input_ids"]) == max_length)
        trainer.train()
        checkpointing = bool(trainer.args.gradient_checkpointing)
    shape = flops.shape(model.config.to_dict())
    rate = clock.tokens / clock.seconds
    peak = compute.device_peak(gpu_name())
    per_token = flops.training_per_token(shape, max_length) if packing else None  # blocks of exactly max_length
    return {
        "model": name, "loop": "trl", "parameters": sum(p.numel() for p in model.parameters()), "packing": packing,
        "warmup_steps": warmup, "timed_steps": steps, "max_length": max_length, "batch": batch,
        "precision": "bf16" if bf16 else "fp32", "gradient_checkpointing": checkpointing,
        "tokens": clock.tokens, "seconds": clock.seconds, "tokens_per_s": rate,
        "flops_per_token": per_token, "six_n_per_token": 6 * shape.parameters(),
        "model_flops_per_s": per_token * rate if per_token else None,
        "mfu": per_token * rate / peak if per_token and peak else None,
    }  # fmt: skip


def bare_loop(
    name: str, model: Any, tokenizer: Any, warmup: int, steps: int, max_length: int, batch: int, bf16: bool
) -> dict[str, Any]:
    """Forward with labels, backward and an AdamW step on packed blocks of max_length tokens, nothing else."""
    gpu = torch.cuda.is_available()
    device = "cuda" if gpu else "cpu"
    ids = tokenizer("\n\n".join(texts(tokenizer, (warmup + steps) * batch * max_length))).input_ids
    blocks = torch.tensor(ids[: (warmup + steps) * batch * max_length]).view(warmup + steps, batch, max_length)
    model = model.to(device).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-5)
    clock = SteadyClock(warmup)
    for step, block in enumerate(blocks.to(device)):
        if step == warmup:
            started = clock._now()
        with torch.autocast(device, dtype=torch.bfloat16, enabled=bf16):
            loss = model(input_ids=block, labels=block).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    seconds = clock._now() - started
    tokens = steps * batch * max_length
    return {
        "model": name, "loop": "bare", "packing": True, "warmup_steps": warmup, "timed_steps": steps,
        "max_length": max_length, "batch": batch, "precision": "bf16" if bf16 else "fp32", "tokens": tokens,
        "seconds": seconds, "tokens_per_s": tokens / seconds, "mfu": None,
    }  # fmt: skip


def report(rows: list[dict[str, Any]]) -> None:
    print(f"{'model':>20} {'loop':>5} {'precision':>9} {'packing':>7} {'tokens/s':>10} {'vs no packing':>14} "
          f"{'trl/bare':>9} {'MFU':>6}")  # fmt: skip
    for r in rows:
        same = [b for b in rows if b["model"] == r["model"] and b["precision"] == r["precision"]]
        base = next((b for b in same if b["loop"] == "trl" and not b["packing"]), r)
        bare = next((b for b in same if b["loop"] == "bare"), None)
        r["ratio_to_no_packing"] = r["tokens_per_s"] / base["tokens_per_s"]
        if r["loop"] == "trl" and r["packing"] and bare:
            r["ratio_to_bare"] = r["tokens_per_s"] / bare["tokens_per_s"]
        mfu = f"{100 * r['mfu']:.1f}%" if r["mfu"] is not None else "n/a"
        to_bare = f"{r['ratio_to_bare']:.2f}x" if "ratio_to_bare" in r else ""
        print(f"{r['model']:>20} {r['loop']:>5} {r['precision']:>9} {r['packing']!s:>7} {r['tokens_per_s']:>10.1f} "
              f"{r['ratio_to_no_packing']:>13.2f}x {to_bare:>9} {mfu:>6}")  # fmt: skip


def header() -> dict[str, Any]:
    """What every row's MFU was computed from."""
    name = gpu_name()
    return {
        "gpu": name,
        "peak_bf16_flops": compute.device_peak(name),
        "peak_note": None if compute.device_peak(name) or not name else f"no dense bf16 peak on record for {name!r}",
        "flops_formula": flops.FORMULA,
        "mfu_definition": "flops_per_token x tokens_per_s / peak_bf16_flops (packed rows: every sequence max_length)",
        "versions": {"torch": torch.__version__},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default=str(ROOT / "results/models/base/smollm2"))
    parser.add_argument("--warmup", type=int, default=2, help="optimizer steps left out of the timing")
    parser.add_argument("--steps", type=int, default=6, help="timed optimizer steps")
    parser.add_argument("--max-length", type=int, default=512)
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--with-1b", action="store_true", help="also the 1B random Llama (default on GPU)")
    parser.add_argument("--no-fp32", action="store_true", help="only bf16, where this device has it")
    parser.add_argument("--out", default=str(ROOT / "bench/results/training.json"))
    args = parser.parse_args()
    tokenizer = AutoTokenizer.from_pretrained(args.model)
    settings = (args.warmup, args.steps, args.max_length, args.batch)
    fast_bf16 = inference.fast_bf16(torch.cuda.is_available())
    precisions = [bf16 for bf16 in (False, True) if (bf16 and fast_bf16) or (not bf16 and not args.no_fp32)]
    models = [("SmolLM2-135M", lambda: AutoModelForCausalLM.from_pretrained(args.model, dtype=torch.float32))]
    if args.with_1b or torch.cuda.is_available():
        models.append(("Llama-1B (random)", one_billion))
    rows = []
    for name, load in models:
        for bf16 in precisions:
            for packing in (False, True):
                rows.append(measure(name, load(), tokenizer, packing, *settings, bf16))
            rows.append(bare_loop(name, load(), tokenizer, *settings, bf16))
    report(rows)
    results_file.write(args.out, {**header(), "rows": rows})


if __name__ == "__main__":
    main()
