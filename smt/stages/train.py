"""Stage train: continued training of the student on the mix with TRL's SFTTrainer (smt/train/).

The adapter turns the stage's params and paths into a run spec; smt/train/launch.py decides the processes,
resumes from checkpoints of the same run and trains (smt/train/sft.py, where loss, packing and batch are
described).
"""

from __future__ import annotations

import os
from pathlib import Path

from smt import artifacts
from smt.pipeline import gpus
from smt.pipeline.context import StageContext
from smt.train import launch
from smt.train.spec import HYPERPARAMETERS, TrainSpec

CHECKPOINTS = Path("results/.checkpoints")


def spec(ctx: StageContext) -> TrainSpec:
    return TrainSpec(
        base_model=ctx.input("model"),
        data=ctx.input("train"),
        mix_report=ctx.input("mix_report"),
        model_out=ctx.outputs["model"],
        loss_out=ctx.outputs["loss"],
        metrics_out=ctx.outputs["metrics"],
        checkpoints=str(CHECKPOINTS / ctx.stage.name / "-".join(ctx.axes[a] for a in ctx.stage.axes)),
        name=f"{ctx.benchmark}-{ctx.axes['recipe']}-{ctx.budget}",
        seed=ctx.p("seed"),
        hyper={key: ctx.p(f"train.{key}") for key in HYPERPARAMETERS},
        fingerprint=ctx.fingerprint,
        code=artifacts.files_hash(ctx.code),
        provenance=ctx.provenance(),
    )


def run(ctx: StageContext) -> None:
    env = {k: v for k, v in os.environ.items() if k != gpus.REQUEST_VAR}  # the job's devices are claimed already
    launch.run(spec(ctx), env, ctx.log)
