"""Continued training of the student on the mix with TRL's SFTTrainer.

Plain next-token loss on the mixed text, packed into fixed-length blocks ('wrapped' packing, as in continued
pretraining). params hold the *effective* batch size; gradient accumulation is derived from the number of
processes, so adding devices does not change the optimization.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import time
from pathlib import Path
from typing import Any

import torch
from datasets import Dataset
from transformers import AutoModelForCausalLM, AutoTokenizer, TrainerCallback
from trl import SFTConfig, SFTTrainer

from smt import io
from smt.context import StageContext


def gradient_accumulation(effective: int, per_device: int, world_size: int) -> int:
    per_step = per_device * world_size
    if effective % per_step:
        raise ValueError(
            f"train.effective_batch_size = {effective} is not a multiple of train.per_device_batch_size x "
            f"processes = {per_device} x {world_size}; choose values whose product divides it"
        )
    return effective // per_step


class TokenCounter(TrainerCallback):
    """Wall time of the training loop, for tokens/s."""

    def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self.started = time.perf_counter()

    def on_train_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self.seconds = time.perf_counter() - self.started


def sha256_file(path: str) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def lora_config(ctx: StageContext) -> Any:
    from peft import LoraConfig

    return LoraConfig(
        r=ctx.p("train.lora_r"),
        lora_alpha=ctx.p("train.lora_alpha"),
        target_modules="all-linear",
        lora_dropout=0.0,
        task_type="CAUSAL_LM",
    )


def config(ctx: StageContext, output_dir: str) -> SFTConfig:
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    bf16 = torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    return SFTConfig(
        output_dir=output_dir,
        dataset_text_field="text",
        max_length=ctx.p("train.max_length"),
        packing=ctx.p("train.packing"),
        packing_strategy="wrapped",
        per_device_train_batch_size=ctx.p("train.per_device_batch_size"),
        gradient_accumulation_steps=gradient_accumulation(
            ctx.p("train.effective_batch_size"), ctx.p("train.per_device_batch_size"), world_size
        ),
        num_train_epochs=ctx.p("train.epochs"),
        max_steps=ctx.p("train.max_steps") or -1,
        learning_rate=ctx.p("train.learning_rate"),
        lr_scheduler_type=ctx.p("train.lr_scheduler"),
        warmup_steps=ctx.p("train.warmup_ratio"),
        weight_decay=ctx.p("train.weight_decay"),
        adam_beta1=ctx.p("train.adam_beta1"),
        adam_beta2=ctx.p("train.adam_beta2"),
        seed=ctx.p("seed"),
        data_seed=ctx.p("seed"),
        bf16=bf16,
        use_cpu=not torch.cuda.is_available(),
        logging_steps=1,
        save_strategy="no",
        report_to=[],
        disable_tqdm=False,
    )


def run(ctx: StageContext) -> None:
    base = ctx.input("model")
    records = io.read_jsonl(ctx.input("train"))
    if not records:
        raise ValueError(f"{ctx.input('train')}: the training mix is empty")
    dataset = Dataset.from_list([{"text": r["text"]} for r in records])
    tokenizer = AutoTokenizer.from_pretrained(base)
    model = AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32)
    n_params = sum(p.numel() for p in model.parameters())
    with io.atomic_dir(ctx.outputs["model"]) as out:
        counter = TokenCounter()
        trainer = SFTTrainer(
            model=model,
            args=config(ctx, str(out / "trainer")),
            train_dataset=dataset,
            processing_class=tokenizer,
            peft_config=lora_config(ctx) if ctx.p("train.mode") == "lora" else None,
            callbacks=[counter],
        )
        result = trainer.train()
        trained = trainer.model
        if ctx.p("train.mode") == "lora":
            trained = trained.merge_and_unload()
        trained.save_pretrained(out)
        tokenizer.save_pretrained(out)
        state = trainer.state
        tokens_seen = state.global_step * ctx.p("train.effective_batch_size") * ctx.p("train.max_length")
        losses = [h for h in state.log_history if "loss" in h]
        metrics = {
            "steps": state.global_step,
            "train_loss": round(result.training_loss, 4),
            "first_loss": round(losses[0]["loss"], 4) if losses else None,
            "last_loss": round(losses[-1]["loss"], 4) if losses else None,
            "tokens_seen": tokens_seen,
            "tokens_per_s": round(tokens_seen / counter.seconds, 2) if counter.seconds else 0.0,
            "train_seconds": round(counter.seconds, 2),
            "parameters": n_params,
            "train_flops_6nd": 6 * n_params * tokens_seen,
        }
        base_manifest = io.read_json(Path(base) / "smt_manifest.json")
        io.write_json(
            out / "smt_manifest.json",
            {
                "model_id": f"{base_manifest.get('model_id')}+smt-{ctx.benchmark}",
                "base_model": base_manifest.get("model_id"),
                "mode": ctx.p("train.mode"),
                "data_sha256": sha256_file(ctx.input("train")),
                "metrics": metrics,
                "provenance": ctx.provenance(),
            },
        )
        shutil.rmtree(out / "trainer", ignore_errors=True)
    lines = ["step,loss,learning_rate"] + [f"{h['step']},{h['loss']},{h.get('learning_rate', '')}" for h in losses]
    io.write_text(ctx.outputs["loss"], "\n".join(lines) + "\n")
    io.write_json(ctx.outputs["metrics"], metrics)
    ctx.log.info("train: %s", metrics)
