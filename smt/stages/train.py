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

Processes: one process by default. With several GPUs in the job (Snakemake's `gpu` resource, see smt/gpus.py),
or `SMT_ACCELERATE_CONFIG` naming an accelerate config (envs/accelerate/: single GPU, DDP, FSDP, DeepSpeed
ZeRO-3), this stage starts `accelerate launch` with one process per GPU (`SMT_TRAIN_PROCESSES` overrides the
count, e.g. two CPU processes with gloo) and every process runs `train()`; rank 0 writes the outputs.

Resumption: checkpoints (every `train.save_steps` optimizer steps, the last two kept) go to
results/.checkpoints/train/<benchmark>-<budget>/, outside the output folder that a failed run discards. A rerun
resumes from the last complete checkpoint when the params fingerprint, the data fingerprint (sha256 of the mix),
the base model and the process layout are those the checkpoints were made with, and starts afresh otherwise.
The folder is deleted once the model is written.

Compute: train_metrics.json records tokens seen (non-padding input tokens, counted by the Trainer and resumed
with it), tokens/s, 6ND for training and 2MD for the generation of the synthetic data behind the mix (from the
generation manifests the mix report collects; M is known when the generator is the base model folder).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from smt import artifacts, io
from smt import params as P
from smt import registry as R
from smt.context import StageContext

CHECKPOINTS = Path("results/.checkpoints")
IDENTITY = "smt_identity.json"  # what a checkpoint folder's checkpoints were trained on
ACCELERATE_CONFIGS = Path(__file__).resolve().parents[2] / "envs" / "accelerate"
DATA_FILES = ("envs/accelerate/*.yaml", "envs/accelerate/*.json")  # the launch configs: code dependencies too
CONFIG_VAR = "SMT_ACCELERATE_CONFIG"  # an accelerate config file: placement, not results (see README "Training")
PROCESSES_VAR = "SMT_TRAIN_PROCESSES"  # processes to launch; default: the GPUs the job sees
TRAINER_STATE = "trainer_state.json"  # written last into a checkpoint: its presence marks it complete


def gradient_accumulation(effective: int, per_device: int, world_size: int) -> int:
    per_step = per_device * world_size
    if effective % per_step:
        raise ValueError(
            f"train.effective_batch_size = {effective} is not a multiple of train.per_device_batch_size x "
            f"processes = {per_device} x {world_size}; choose values whose product divides it"
        )
    return effective // per_step


def precision(requested: str) -> str:
    """bf16 or fp32: `auto` is bf16 on a GPU that supports it, fp32 elsewhere; `bf16` on a CPU uses CPU autocast."""
    import torch

    cuda = torch.cuda.is_available()
    if requested == "auto":
        return "bf16" if cuda and torch.cuda.is_bf16_supported() else "fp32"
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


def checkpoint_folder(ctx: StageContext) -> Path:
    return CHECKPOINTS / ctx.stage.name / "-".join(ctx.axes[a] for a in ctx.stage.axes)


def model_identity(folder: str) -> dict[str, Any]:
    """The base model, cheaply: its manifest and the size and date of each weights file."""
    path = Path(folder)
    manifest = path / "smt_manifest.json"
    return {
        "manifest_sha256": artifacts.sha256(manifest) if manifest.exists() else None,
        "weights": {f.name: [f.stat().st_size, f.stat().st_mtime_ns] for f in sorted(path.glob("*.safetensors"))},
    }


def prepare_checkpoints(folder: Path, identity: dict[str, Any], log: logging.Logger) -> str | None:
    """Keep the checkpoints only if they were made from the same params, data, model and layout; return the
    last complete one to resume from."""
    marker = folder / IDENTITY
    if folder.exists():
        previous = io.read_json(marker) if marker.exists() else None
        if previous != identity:
            changed = sorted(k for k in identity if not previous or previous.get(k) != identity[k])
            log.info("train: discarding checkpoints in %s (changed: %s)", folder, ", ".join(changed) or "unknown")
            shutil.rmtree(folder)
    folder.mkdir(parents=True, exist_ok=True)
    io.write_json(marker, identity)
    return last_checkpoint(folder)


def last_checkpoint(folder: Path) -> str | None:
    complete = [c for c in folder.glob("checkpoint-*") if (c / TRAINER_STATE).exists()]
    return str(max(complete, key=lambda c: int(c.name.split("-")[1]))) if complete else None


def launch_plan(env: dict[str, str], gpu_count: int) -> tuple[int, str | None]:
    """How many processes, and the accelerate config to launch them with (None: train in this process)."""
    raw = env.get(PROCESSES_VAR, "").strip()
    if raw and (not raw.isdigit() or int(raw) < 1):
        raise ValueError(f"{PROCESSES_VAR}={raw!r}: expected a positive whole number of processes")
    processes = int(raw) if raw else max(gpu_count, 1)
    config = env.get(CONFIG_VAR, "").strip() or None
    if config is None and processes > 1:
        config = str(ACCELERATE_CONFIGS / "multi_gpu.yaml")
    if config is not None and not Path(config).is_file():
        raise ValueError(f"{CONFIG_VAR}={config!r}: no such accelerate config file")
    return processes, config


def sft_config(ctx: StageContext, output_dir: str, world_size: int, precision_used: str) -> Any:
    import torch
    from trl import SFTConfig

    save_steps = ctx.p("train.save_steps")
    return SFTConfig(
        output_dir=output_dir,
        dataset_text_field="text",
        max_length=ctx.p("train.max_length"),
        packing=ctx.p("train.packing"),
        packing_strategy="wrapped",
        completion_only_loss=ctx.p("train.loss") == "answers",
        per_device_train_batch_size=ctx.p("train.per_device_batch_size"),
        gradient_accumulation_steps=gradient_accumulation(
            ctx.p("train.effective_batch_size"), ctx.p("train.per_device_batch_size"), world_size
        ),
        num_train_epochs=ctx.p("train.epochs"),
        max_steps=ctx.p("train.max_steps") or -1,
        optim="adamw_torch",
        learning_rate=ctx.p("train.learning_rate"),
        lr_scheduler_type=ctx.p("train.lr_scheduler"),
        warmup_steps=ctx.p("train.warmup_ratio"),  # below 1: a fraction of the total steps
        weight_decay=ctx.p("train.weight_decay"),
        adam_beta1=ctx.p("train.adam_beta1"),
        adam_beta2=ctx.p("train.adam_beta2"),
        gradient_checkpointing=ctx.p("train.gradient_checkpointing"),
        seed=ctx.p("seed"),
        data_seed=ctx.p("seed"),
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


def lora_config(ctx: StageContext) -> Any:
    from peft import LoraConfig

    return LoraConfig(
        r=ctx.p("train.lora_r"),
        lora_alpha=ctx.p("train.lora_alpha"),
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


def generation_compute(report: dict[str, Any], base: str, n_params: int) -> dict[str, Any]:
    """2MD for the synthetic data behind the mix: D from the generation manifests, M when the generator is the
    base model folder (otherwise unknown: a remote or other model)."""
    generation = report.get("generation") or {}
    tokens = generation.get("completion_tokens")
    models = generation.get("models") or []
    local = bool(models) and all(m.get("path") and Path(m["path"]).resolve() == Path(base).resolve() for m in models)
    found: dict[str, Any] = {"generated_tokens": tokens, "generator_parameters": n_params if local else None}
    if tokens is None:
        found["generation_flops_2md"] = None
        found["generation_note"] = "the mix report records no generation manifests"
    elif not local:
        found["generation_flops_2md"] = None
        ids = ", ".join(str(m.get("id")) for m in models) or "unknown"
        found["generation_note"] = f"generator {ids} is not the base model folder; its parameter count is unknown"
    else:
        found["generation_flops_2md"] = 2 * n_params * tokens
        found["generation_note"] = "all synthetic streams of the benchmark (shared by every token budget)"
    return found


def final_model(ctx: StageContext, trainer: Any) -> Any:
    """The trained model as one plain transformers model (LoRA adapters merged) on rank 0, None on the other
    ranks. Rank 0 holds the whole model under DDP; a sharded one (FSDP, ZeRO-3) is first gathered by the
    Trainer into the checkpoint folder (a collective call: every rank takes part) and read back."""
    import torch
    from transformers import AutoModelForCausalLM

    lora = ctx.p("train.mode") == "lora"
    if trainer.is_fsdp_enabled or trainer.is_deepspeed_enabled:
        gathered = Path(trainer.args.output_dir) / "final"
        trainer.save_model(str(gathered))
        if not trainer.is_world_process_zero():
            return None
        if not lora:
            return AutoModelForCausalLM.from_pretrained(gathered, dtype=torch.float32)
        from peft import PeftModel

        model = AutoModelForCausalLM.from_pretrained(ctx.input("model"), dtype=torch.float32)
        return PeftModel.from_pretrained(model, gathered).merge_and_unload()
    if not trainer.is_world_process_zero():
        return None
    model = trainer.accelerator.unwrap_model(trainer.model)
    return model.merge_and_unload() if lora else model


def export_model(model: Any, base: str, out: Path) -> None:
    """A plain Hugging Face folder (config.json, generation_config.json, safetensors, tokenizer) that
    transformers and vLLM load like a hub model, in the base model's dtype."""
    import torch
    from transformers import AutoConfig, AutoTokenizer

    dtype = getattr(AutoConfig.from_pretrained(base), "dtype", None) or torch.float32
    model.to(dtype).save_pretrained(out, safe_serialization=True)
    AutoTokenizer.from_pretrained(base).save_pretrained(out)


def loss_csv(history: list[dict[str, Any]]) -> str:
    lines = ["step,loss,learning_rate,tokens_seen"]
    lines += [
        f"{h['step']},{h['loss']},{h.get('learning_rate', '')},{h.get('num_input_tokens_seen', '')}"
        for h in history
        if "loss" in h
    ]
    return "\n".join(lines) + "\n"


def launch_files(config: str | None) -> list[Path]:
    """The accelerate config a launch uses and the DeepSpeed config it names, if any."""
    if config is None:
        return []
    files = [Path(config)]
    text = Path(config).read_text()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "deepspeed_config_file" and value.strip():
            named = Path(value.strip().strip("'\""))
            files.append(named if named.is_file() else Path(config).parent / named.name)
    return [f for f in files if f.is_file()]


def identity(ctx: StageContext, processes: int, config: str | None, precision_used: str) -> dict[str, Any]:
    """Everything that shapes a checkpoint: params, data, base model, code, process layout, launch configs and
    the precision actually used (auto resolves by device)."""
    return {
        "params_fingerprint": ctx.fingerprint,
        "data_sha256": artifacts.sha256(ctx.input("train")),
        "base_model": model_identity(ctx.input("model")),
        "code": artifacts.files_hash(R.stage_code(ctx.stage, ctx.axes)),
        "processes": processes,
        "accelerate_config": Path(config).name if config else None,
        "launch_files": artifacts.files_hash(launch_files(config)),
        "precision": precision_used,
    }


def train(ctx: StageContext, folder: Path) -> None:
    """Train (in every process of a launch), then write the model, loss curve and metrics (rank 0)."""
    import torch
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import SFTTrainer

    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    marker = io.read_json(folder / IDENTITY)
    resume = last_checkpoint(folder)
    precision_used = precision(ctx.p("train.precision"))
    args = sft_config(ctx, str(folder), world_size, precision_used)  # before the model: DeepSpeed ZeRO-3 init
    base = ctx.input("model")
    dataset = Dataset.from_list(examples(io.read_jsonl(ctx.input("train")), ctx.p("train.loss"), ctx.input("train")))
    tokenizer = AutoTokenizer.from_pretrained(base)
    model = AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32)
    n_params = parameters(model)
    clock = Clock()
    trainer = SFTTrainer(
        model=model,
        args=args,
        train_dataset=dataset,
        processing_class=tokenizer,
        peft_config=lora_config(ctx) if ctx.p("train.mode") == "lora" else None,
        callbacks=[clock.callback],
    )
    packed_tokens, loss_tokens = dataset_tokens(trainer.train_dataset)
    trainable = parameters(trainer.model, trainable=True)
    if resume:
        ctx.log.info("train: resuming from %s", resume)
    trainer.train(resume_from_checkpoint=resume)
    model = final_model(ctx, trainer)
    if model is None:  # not rank 0
        return
    state = trainer.state
    history = [h for h in state.log_history if "loss" in h]
    tokens_seen = int(state.num_input_tokens_seen)
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
    }
    metrics.update(generation_compute(io.read_json(ctx.input("mix_report")), base, n_params))
    metrics["total_flops"] = metrics["train_flops_6nd"] + (metrics["generation_flops_2md"] or 0)
    out = Path(ctx.outputs["model"])
    for stale in out.parent.glob(f".{out.name}.*.tmp"):  # left behind by a killed export
        shutil.rmtree(stale, ignore_errors=True)
    with io.atomic_dir(out) as tmp:
        export_model(model, base, tmp)
        base_manifest = io.read_json(Path(base) / "smt_manifest.json")
        io.write_json(
            tmp / "smt_manifest.json",
            {
                "model_id": f"{base_manifest.get('model_id')}+smt-{ctx.benchmark}-{ctx.budget}",
                "base_model": base_manifest.get("model_id"),
                "mode": ctx.p("train.mode"),
                "loss": ctx.p("train.loss"),
                "seed": ctx.p("seed"),
                "data_sha256": marker["data_sha256"],
                "launch": {"processes": world_size, "accelerate_config": marker["accelerate_config"]},
                "metrics": metrics,
                "provenance": ctx.provenance(),
            },
        )
    io.write_text(ctx.outputs["loss"], loss_csv(state.log_history))
    io.write_json(ctx.outputs["metrics"], {**metrics, "provenance": ctx.provenance()})
    ctx.log.info("train: %s", json.dumps(metrics))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def run(ctx: StageContext) -> None:
    import torch

    from smt import gpus

    processes, config = launch_plan(dict(os.environ), torch.cuda.device_count())
    folder = checkpoint_folder(ctx)
    resume = prepare_checkpoints(folder, identity(ctx, processes, config, precision(ctx.p("train.precision"))), ctx.log)
    ctx.log.info("train: %d process(es)%s; checkpoints in %s", processes, f", {config}" if config else "", folder)
    if resume:
        ctx.log.info("train: found checkpoint %s", resume)
    if config is None:
        train(ctx, folder)
    else:
        params_file = folder / "params.yaml"  # the workers read exactly these params
        io.write_text(params_file, json.dumps(ctx.params, indent=1))
        command = [
            sys.executable,
            "-m",
            "accelerate.commands.launch",
            "--config_file",
            config,
            "--num_processes",
            str(processes),
            "--main_process_port",
            str(_free_port()),
            "-m",
            "smt.stages.train",
            "--params",
            str(params_file),
            *[x for a in ctx.stage.axes for x in (f"--{a}", ctx.axes[a])],
        ]
        env = {k: v for k, v in os.environ.items() if k != gpus.REQUEST_VAR}  # the devices are claimed already
        ctx.log.info("train: %s", " ".join(command))
        proc = subprocess.run(command, env=env, check=False)
        if proc.returncode:
            raise RuntimeError(f"train: accelerate launch exited with {proc.returncode} (see the log above)")
    shutil.rmtree(folder, ignore_errors=True)


def worker(argv: list[str] | None = None) -> None:
    """One process of an accelerate launch: the stage's context without the scheduler's bookkeeping."""
    parser = argparse.ArgumentParser(prog="smt.stages.train")
    parser.add_argument("--params", required=True)
    st = R.stage("train")
    for axis in st.axes:
        parser.add_argument(f"--{axis}", required=True)
    args = parser.parse_args(argv)
    params = P.load(args.params)
    axes = {a: getattr(args, a) for a in st.axes}
    log = logging.getLogger(f"smt.train.rank{os.environ.get('RANK', '0')}")
    if not log.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(asctime)s %(name)s %(levelname)s %(message)s"))
        log.addHandler(handler)
        log.setLevel(logging.INFO)
    ctx = StageContext(
        stage=st,
        axes=axes,
        params=params,
        inputs=R.stage_inputs(st, axes, params),
        outputs=R.stage_outputs(st, axes, params),
        log=log,
    )
    train(ctx, checkpoint_folder(ctx))


if __name__ == "__main__":
    worker()
