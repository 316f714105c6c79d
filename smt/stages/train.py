"""Stage train: continued training of the student on the mix with TRL's SFTTrainer (smt/train/).

The adapter turns the stage's params and paths into a run spec; smt/train/launch.py decides the processes,
resumes from checkpoints of the same run and trains (smt/train/sft.py, where loss, packing and batch are
described).
"""

from __future__ import annotations

import os

from smt import artifacts
from smt.pipeline import gpus
from smt.pipeline.context import StageContext
from smt.train import checkpoints, launch
from smt.train.spec import HYPERPARAMETERS, TrainSpec


def spec(ctx: StageContext) -> TrainSpec:
    return TrainSpec(
        base_model=ctx.input("model"),
        data=ctx.input("train"),
        mix_report=ctx.input("mix_report"),
        model_out=ctx.outputs["model"],
        loss_out=ctx.outputs["loss"],
        metrics_out=ctx.outputs["metrics"],
        checkpoints=str(checkpoints.root(os.environ) / ctx.stage.name / "-".join(ctx.axes[a] for a in ctx.stage.axes)),
        name=f"{ctx.benchmark}-{ctx.axes['recipe']}-{ctx.budget}",
        seed=ctx.p("seed"),
        hyper={key: ctx.p(f"train.{key}") for key in HYPERPARAMETERS},
        fingerprint=ctx.fingerprint,
        code=artifacts.files_hash(ctx.code),
        provenance=ctx.provenance(),
    )


def cpu_fallback(claim: gpus.Claim | None) -> str | None:
    """Why this training job runs on the CPU of a machine that has GPUs, if it does (profiles/default gives the
    train rule none)."""
    hidden = gpus.hidden_from(claim)
    if not hidden:
        return None
    return (
        f"train: this job holds no GPU although {hidden} are on this machine (the profile gives rule train gpu=0), "
        "so it trains on the CPU; run with --workflow-profile profiles/gpu (SMT_TRAIN_GPUS) to use them"
    )


def run(ctx: StageContext) -> None:
    warning = cpu_fallback(gpus.held())
    if warning:
        ctx.log.warning(warning)
    env = {k: v for k, v in os.environ.items() if k != gpus.REQUEST_VAR}  # the job's devices are claimed already
    launch.run(spec(ctx), env, ctx.log)
