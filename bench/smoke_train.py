"""The train stage in a scratch copy of the project, for bench/gpu_smoke.py: a few steps with a checkpoint after
every step, a SIGKILL once a checkpoint is complete, and the same command again, which must resume from it. In
one process, or through `accelerate launch` with envs/accelerate/fsdp.yaml (sharded checkpoints)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import yaml
from project_copy import copy_project

from smt.pipeline import stages as S

ROOT = Path(__file__).resolve().parents[1]
RECIPE, BUDGET = "smt", 64  # the mix instance the run trains on (its files are written here, not by the mix stage)
AXES = {"benchmark": "demo", "recipe": RECIPE, "budget": str(BUDGET)}
STEPS = 4


def workspace(dest: Path, base: Path, max_length: int) -> Path:
    """The project's files (tracked and new, not ignored) in `dest`, params for a short checkpointed run, the base
    model folder linked in, and a training mix of demo paragraphs where the train stage reads it."""
    copy_project(dest)
    params = yaml.safe_load((dest / "params.yaml").read_text())
    params["mix"]["token_budgets"] = [BUDGET]
    params["train"].update(
        mode="full", loss="text", max_steps=STEPS, save_steps=1, max_length=max_length, effective_batch_size=2,
        per_device_batch_size=1, warmup_ratio=0.0, precision="auto", packing=True,
    )  # fmt: skip
    (dest / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    student = dest / S.BASE_MODEL.format(model=params["roles"]["student"])
    student.parent.mkdir(parents=True, exist_ok=True)
    student.symlink_to(base.resolve())
    mix = dest / Path(S.MIX.format(**AXES)).parent
    mix.mkdir(parents=True)
    docs = [json.loads(line) for line in (ROOT / "smt/benchmarks/demo/documents.jsonl").open()]
    rows = [
        {"id": f"{d['doc_id']}/p{i}", "doc_id": d["doc_id"], "text": p, "stream": "docs"}
        for d in docs
        for i, p in enumerate(d["text"].split("\n\n"))
        if p.strip()
    ]
    (mix / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (mix / "mix_report.json").write_text(json.dumps({"token_budget": BUDGET}))
    return dest


def _complete(folder: Path) -> list[Path]:
    return sorted(folder.glob("checkpoint-*/trainer_state.json"))


def killed_and_resumed(ws: Path, extra_env: dict[str, str], timeout: float = 900) -> dict[str, Any]:
    """Run the stage, SIGKILL it (and its launch's processes) once a checkpoint is complete, run it again.
    Checkpoints live under SMT_CHECKPOINT_DIR (outside results/, as on a cluster's shared volume)."""
    root = ws / "shared-checkpoints"
    env = {**os.environ, **extra_env, "SMT_CHECKPOINT_DIR": str(root), "PYTHONPATH": ""}
    command = [sys.executable, "-m", "smt", "train", *(f"--{axis}={value}" for axis, value in AXES.items())]
    folder = root / "train" / "-".join(AXES.values())
    log = ws / "killed.log"
    with log.open("w") as out:
        proc = subprocess.Popen(command, cwd=ws, env=env, stdout=out, stderr=out, start_new_session=True)
    deadline = time.monotonic() + timeout
    try:
        while not _complete(folder):
            if proc.poll() is not None:
                raise RuntimeError(f"training ended before its first checkpoint:\n{log.read_text()[-3000:]}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"no checkpoint after {timeout:.0f} s")
            time.sleep(0.05)
        os.killpg(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(timeout=120)
    checkpoint = _complete(folder)[-1].parent
    contents = sorted(p.name for p in checkpoint.iterdir())
    started = time.monotonic()
    again = subprocess.run(command, cwd=ws, env=env, capture_output=True, text=True, timeout=timeout, check=False)
    if again.returncode:
        raise RuntimeError(f"the resumed run failed ({again.returncode}):\n{again.stderr[-4000:]}")
    outputs = {name: ws / out.path.format(**AXES) for name, out in S.stage("train").outputs.items()}
    metrics = json.loads(outputs["metrics"].read_text())
    loss = outputs["loss"].read_text().splitlines()[1:]
    found = {
        "killed_after_checkpoint": checkpoint.name,
        "checkpoint_files": contents,
        "resumed_from_step": metrics["resumed_from_step"],
        "steps": metrics["steps"],
        "loss_steps": [int(line.split(",")[0]) for line in loss],
        "last_loss": metrics["last_loss"],
        "precision": metrics["precision"],
        "processes": metrics["processes"],
        "device": metrics["device"],
        "resume_seconds": round(time.monotonic() - started, 1),
        "checkpoints_removed": not folder.exists(),
    }
    if not (found["resumed_from_step"] >= 1 and found["steps"] == STEPS and found["loss_steps"] == [1, 2, 3, 4]):
        raise RuntimeError(f"the rerun did not resume and finish the run: {found}")
    return found


def loads(ws: Path) -> dict[str, Any]:
    """The trained folder loads with transformers and holds the base model's parameters."""
    import torch
    from transformers import AutoModelForCausalLM

    params = yaml.safe_load((ws / "params.yaml").read_text())
    model = AutoModelForCausalLM.from_pretrained(ws / S.SMT_MODEL.format(**AXES))
    base = AutoModelForCausalLM.from_pretrained(ws / S.BASE_MODEL.format(model=params["roles"]["student"]))
    moved = sum(not torch.equal(p, base.get_parameter(n)) for n, p in model.named_parameters())
    return {"parameters": sum(p.numel() for p in model.parameters()), "tensors_changed": moved}
