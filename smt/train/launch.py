"""How a training run is launched: in this process, or as `accelerate launch` with one process per GPU.

With several GPUs in the job, or `SMT_ACCELERATE_CONFIG` naming an accelerate config (envs/accelerate/: single
GPU, DDP, FSDP, DeepSpeed ZeRO-3), the run starts `accelerate launch` (`SMT_TRAIN_PROCESSES` overrides the
process count, e.g. two CPU processes with gloo); every process runs the same training from the run's spec
file, and rank 0 writes the outputs.
"""

from __future__ import annotations

import logging
import shutil
import socket
import subprocess
import sys
from pathlib import Path

from smt.train import checkpoints, sft
from smt.train.spec import TrainSpec

ACCELERATE_CONFIGS = Path(__file__).resolve().parents[2] / "envs" / "accelerate"
DATA_FILES = ("envs/accelerate/*.yaml", "envs/accelerate/*.json")  # the launch configs: code dependencies too
CONFIG_VAR = "SMT_ACCELERATE_CONFIG"  # an accelerate config file: placement, not results (see README "Training")
PROCESSES_VAR = "SMT_TRAIN_PROCESSES"  # processes to launch; default: the GPUs the job sees


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


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def run(spec: TrainSpec, env: dict[str, str], log: logging.Logger) -> None:
    """Train (resuming from a checkpoint of the same run), write the model, loss curve and metrics, then remove
    the checkpoints. `env`: the environment the launch sees (its GPUs claimed already)."""
    import torch

    processes, config = launch_plan(env, torch.cuda.device_count())
    folder = Path(spec.checkpoints)
    identity = checkpoints.identity(spec, processes, config, sft.precision(spec["precision"]))
    resume = checkpoints.prepare(folder, identity, log)
    log.info("train: %d process(es)%s; checkpoints in %s", processes, f", {config}" if config else "", folder)
    if resume:
        log.info("train: found checkpoint %s", resume)
    if config is None:
        sft.train(spec, log)
    else:
        spec_file = folder / "spec.json"  # every process reads exactly this run
        spec.save(spec_file)
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
            "smt.train.worker",
            str(spec_file),
        ]
        log.info("train: %s", " ".join(command))
        proc = subprocess.run(command, env=env, check=False)
        if proc.returncode:
            raise RuntimeError(f"train: accelerate launch exited with {proc.returncode} (see the log above)")
    shutil.rmtree(folder, ignore_errors=True)
