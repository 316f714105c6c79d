"""Continued training of the student on the mix with TRL's SFTTrainer.

Loss (`train.loss`):
- `text` (default; the paper's continued pretraining): plain next-token loss on every token of the mix.
- `answers`: QA items train on their answer tokens only (TRL's completion-only loss on prompt/completion
  examples; the mix stores each QA's prompt, the text before its answer); documents and replay passages have
  an empty prompt, so they keep the full next-token loss.

Packing and masking: TRL tokenizes each item (ending in EOS) and builds its labels first (-100 on masked prompt
tokens), then, with `train.packing`, concatenates the items and cuts the stream into blocks of exactly
`max_length` tokens ('wrapped' packing, as in continued pretraining: no padding, items cross block boundaries).
Masks travel with their tokens, so a question stays out of the loss wherever it lands. Attention is not reset
between items within a block (that needs padding-free batches, i.e. FlashAttention, which TRL's best-fit packing
requires), so an answer is predicted with the end of an unrelated item in its context, and a QA cut at a block
boundary continues in the next block without its question. Without packing every item is its own sequence,
truncated to `max_length`, and batches are padded.

Batch: params hold the *effective* batch size (sequences per optimizer step); gradient accumulation is
effective / (per-device batch x processes), so the optimization does not change with the device count.

Processes and resumption: see smt/train/launch.py and smt/train/checkpoints.py.

Compute: train_metrics.json records tokens seen (non-padding input tokens, counted by the Trainer and resumed
with it), tokens/s, 6ND for training and 2MD for the generation of the synthetic data behind the mix (from the
generation manifests the mix report collects; M is known when the generator is the base model folder).
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import time
from pathlib import Path
from typing import Any

from smt import artifacts, faults, inference, io
from smt.train import checkpoints, export, flops
from smt.train.compute import generation_compute
from smt.train.spec import TrainSpec


def gradient_accumulation(effective: int, per_device: int, world_size: int) -> int:
    per_step = per_device * world_size
    if effective % per_step:
        raise ValueError(
            f"train.effective_batch_size = {effective} is not a multiple of train.per_device_batch_size x "
            f"processes = {per_device} x {world_size}; choose values whose product divides it"
        )
    return effective // per_step


def precision(requested: str) -> str:
    """bf16 or fp32: `auto` is bf16 where the device has fast bfloat16 (a GPU that supports it, a CPU with AMX-BF16,
    smt.inference.fast_bf16), fp32 elsewhere; bf16 on a CPU is CPU autocast (float32 weights and optimizer)."""
    import torch

    cuda = torch.cuda.is_available()
    if requested == "auto":
        return "bf16" if inference.fast_bf16(cuda) else "fp32"
    if requested == "bf16" and cuda and not torch.cuda.is_bf16_supported():
        raise ValueError("train.precision = bf16, but this GPU does not support bfloat16; use auto or fp32")
    return requested


def examples(records: list[dict[str, Any]], loss: str, source: str) -> list[dict[str, str]]:
    """Training examples: language-modeling text, or prompt/completion pairs for answer-only loss."""
    rows = []
    for line, record in enumerate(records, 1):
        text, prompt = record.get("text"), record.get("prompt") or ""
        if not isinstance(text, str) or not text:
            raise ValueError(f"{source}: line {line} ({record.get('id')}): field 'text' is missing or empty")
        if not isinstance(prompt, str) or not text.startswith(prompt):
            raise ValueError(f"{source}: line {line} ({record.get('id')}): field 'prompt' is not the start of 'text'")
        rows.append({"text": text} if loss == "text" else {"prompt": prompt, "completion": text[len(prompt) :]})
    if not rows:
        raise ValueError(f"{source}: the training mix is empty")
    return rows


def sft_config(spec: TrainSpec, output_dir: str, world_size: int, precision_used: str) -> Any:
    import torch
    from trl import SFTConfig

    save_steps = spec["save_steps"]
    return SFTConfig(
        output_dir=output_dir,
        dataset_text_field="text",
        max_length=spec["max_length"],
        packing=spec["packing"],
        packing_strategy="wrapped",
        completion_only_loss=spec["loss"] == "answers",
        per_device_train_batch_size=spec["per_device_batch_size"],
        gradient_accumulation_steps=gradient_accumulation(
            spec["effective_batch_size"], spec["per_device_batch_size"], world_size
        ),
        num_train_epochs=spec["epochs"],
        max_steps=spec["max_steps"] or -1,
        optim="adamw_torch",
        learning_rate=spec["learning_rate"],
        lr_scheduler_type=spec["lr_scheduler"],
        warmup_steps=spec["warmup_ratio"],  # below 1: a fraction of the total steps
        weight_decay=spec["weight_decay"],
        adam_beta1=spec["adam_beta1"],
        adam_beta2=spec["adam_beta2"],
        gradient_checkpointing=spec["gradient_checkpointing"],
        seed=spec.seed,
        data_seed=spec.seed,
        bf16=precision_used == "bf16",
        use_cpu=not torch.cuda.is_available(),
        ddp_find_unused_parameters=False if world_size > 1 else None,
        include_num_input_tokens_seen="non_padding",
        logging_steps=1,
        save_strategy="steps" if save_steps else "no",
        save_steps=save_steps or 500,
        save_total_limit=2,
        report_to=[],
        disable_tqdm=False,
    )


def lora_config(spec: TrainSpec) -> Any:
    from peft import LoraConfig

    return LoraConfig(
        r=spec["lora_r"],
        lora_alpha=spec["lora_alpha"],
        target_modules="all-linear",
        lora_dropout=0.0,
        task_type="CAUSAL_LM",
    )


class Clock:
    """This session's training wall time and the tokens it saw (a resumed run counts only its own)."""

    def __init__(self) -> None:
        from transformers import TrainerCallback

        clock = self

        class Callback(TrainerCallback):
            def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
                clock.started, clock.tokens_at_start = time.perf_counter(), state.num_input_tokens_seen

            def on_save(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
                faults.point("train.checkpoint")  # after the checkpoint is complete (trainer_state.json written)

            def on_train_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
                clock.seconds = time.perf_counter() - clock.started
                clock.tokens = state.num_input_tokens_seen - clock.tokens_at_start

        self.callback = Callback()
        self.started = 0.0
        self.seconds = 0.0
        self.tokens_at_start = 0
        self.tokens = 0


def parameters(model: Any, trainable: bool = False) -> int:
    """Parameter count, also of a model partitioned by DeepSpeed ZeRO-3 (whose tensors are then empty)."""
    return sum(getattr(p, "ds_numel", p.numel()) for p in model.parameters() if p.requires_grad or not trainable)


def dataset_tokens(dataset: Any) -> tuple[int, int]:
    """Tokens in one epoch of the prepared (tokenized, packed) dataset, and those that carry loss."""
    import pyarrow.compute as pc

    table = dataset.with_format("arrow")[:]
    tokens = pc.sum(pc.list_value_length(table.column("input_ids"))).as_py() or 0
    labels = pc.list_flatten(table.column("labels"))
    return int(tokens), int(pc.sum(pc.not_equal(labels, -100).cast("int64")).as_py() or 0)


def train(spec: TrainSpec, log: logging.Logger) -> None:
    """Train (in every process of a launch), then write the model, loss curve and metrics (rank 0)."""
    import torch
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import SFTTrainer

    folder = Path(spec.checkpoints)
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    marker = io.read_json(folder / checkpoints.IDENTITY)
    resume = checkpoints.last(folder)
    precision_used = precision(spec["precision"])
    args = sft_config(spec, str(folder), world_size, precision_used)  # before the model: DeepSpeed ZeRO-3 init
    base = spec.base_model
    dataset = Dataset.from_list(examples(io.read_jsonl(spec.data), spec["loss"], spec.data))
    tokenizer = AutoTokenizer.from_pretrained(base)
    model = AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32)
    n_params = parameters(model)
    clock = Clock()
    trainer = SFTTrainer(
        model=model,
        args=args,
        train_dataset=dataset,
        processing_class=tokenizer,
        peft_config=lora_config(spec) if spec["mode"] == "lora" else None,
        callbacks=[clock.callback],
    )
    packed_tokens, loss_tokens = dataset_tokens(trainer.train_dataset)
    trainable = parameters(trainer.model, trainable=True)
    if resume:
        log.info("train: resuming from %s", resume)
    trainer.train(resume_from_checkpoint=resume)
    faults.point("train.trained")
    model = export.final_model(spec, trainer)
    if model is None:  # not rank 0
        return
    state = trainer.state
    history = [h for h in state.log_history if "loss" in h]
    tokens_seen = int(state.num_input_tokens_seen)
    per_token = flops.training_per_token(flops.read_shape(base), spec["max_length"])
    metrics = {
        "steps": state.global_step,
        "epochs": round(state.epoch or 0.0, 4),
        "resumed_from_step": int(resume.rsplit("-", 1)[1]) if resume else 0,
        "train_loss": round(sum(h["loss"] for h in history) / len(history), 4) if history else None,
        "first_loss": round(history[0]["loss"], 4) if history else None,
        "last_loss": round(history[-1]["loss"], 4) if history else None,
        "tokens_seen": tokens_seen,
        "dataset_tokens": packed_tokens,
        "dataset_loss_tokens": loss_tokens,
        "tokens_per_s": round(clock.tokens / clock.seconds, 2) if clock.seconds else 0.0,
        "train_seconds": round(clock.seconds, 2),
        "processes": world_size,
        "gradient_accumulation_steps": args.gradient_accumulation_steps,
        "effective_batch_size": args.gradient_accumulation_steps * args.per_device_train_batch_size * world_size,
        "precision": precision_used,
        "device": "cuda" if torch.cuda.is_available() else "cpu",
        "parameters": n_params,
        "trainable_parameters": trainable,
        "train_flops_6nd": 6 * n_params * tokens_seen,
        # attention included, an untied input embedding left out (smt/train/flops.py); packed blocks only, as
        # unpacked sequence lengths vary
        "train_flops_model": round(per_token * tokens_seen) if spec["packing"] else None,
    }
    metrics.update(generation_compute(io.read_json(spec.mix_report), base, n_params))
    metrics["total_flops"] = metrics["train_flops_6nd"] + (metrics["generation_flops_2md"] or 0)
    out = Path(spec.model_out)
    for stale in out.parent.glob(f".{out.name}.*.tmp"):  # left behind by a killed export
        shutil.rmtree(stale, ignore_errors=True)
    with io.atomic_dir(out) as tmp:
        export.export_model(model, base, tmp)
        base_manifest = artifacts.read_manifest(base)
        artifacts.write_manifest(
            tmp,
            {
                "model_id": f"{base_manifest.get('model_id')}+smt-{spec.name}",
                "base_model": base_manifest.get("model_id"),
                "mode": spec["mode"],
                "loss": spec["loss"],
                "seed": spec.seed,
                "data_sha256": marker["data_sha256"],
                "launch": {"processes": world_size, "accelerate_config": marker["accelerate_config"]},
                "metrics": metrics,
                "provenance": spec.provenance,
            },
        )
    faults.point("train.exported")
    io.write_text(spec.loss_out, export.loss_csv(state.log_history))
    io.write_json(spec.metrics_out, {**metrics, "provenance": spec.provenance})
    log.info("train: %s", json.dumps(metrics))
