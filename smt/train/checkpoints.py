"""Resumable checkpoints: kept only for the same run, and the last complete one found.

Checkpoints (every `save_steps` optimizer steps, the last two kept) go to a folder outside the output that a
failed run discards: under `SMT_CHECKPOINT_DIR` when it is set, else `results/.checkpoints`. A job that a
cluster retries on another machine (a Kubernetes pod with its own disk) resumes only when that root is storage
the retry sees too: a shared volume mounted at the same path in every pod. A rerun resumes from the last
complete checkpoint when everything that shapes it is the same: params, data, base model, code, process layout,
launch configs and the precision actually used. Otherwise the folder is emptied and the log names what changed.
"""

from __future__ import annotations

import logging
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from smt import artifacts, io
from smt.train.spec import TrainSpec

ROOT_VAR = "SMT_CHECKPOINT_DIR"  # placement, not results: where checkpoints live, e.g. a shared volume
DEFAULT_ROOT = "results/.checkpoints"
IDENTITY = "smt_identity.json"  # what a checkpoint folder's checkpoints were trained on
TRAINER_STATE = "trainer_state.json"  # written last into a checkpoint: its presence marks it complete


def root(env: Mapping[str, str]) -> Path:
    """The folder every training run keeps its checkpoints under."""
    return Path(env.get(ROOT_VAR, "").strip() or DEFAULT_ROOT)


def launch_files(config: str | None) -> list[Path]:
    """The accelerate config a launch uses and the DeepSpeed config it names, if any."""
    if config is None:
        return []
    files = [Path(config)]
    for line in Path(config).read_text().splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "deepspeed_config_file" and value.strip():
            named = Path(value.strip().strip("'\""))
            files.append(named if named.is_file() else Path(config).parent / named.name)
    return [f for f in files if f.is_file()]


def identity(spec: TrainSpec, processes: int, config: str | None, precision: str) -> dict[str, Any]:
    """Everything that shapes a checkpoint."""
    return {
        "params_fingerprint": spec.fingerprint,
        "data_sha256": artifacts.sha256(spec.data),
        "base_model": artifacts.model_identity(spec.base_model),
        "code": spec.code,
        "processes": processes,
        "accelerate_config": Path(config).name if config else None,
        "launch_files": artifacts.files_hash(launch_files(config)),
        "precision": precision,
    }


def prepare(folder: Path, identity: dict[str, Any], log: logging.Logger) -> str | None:
    """Keep the checkpoints only if they were made by the same run; return the last complete one."""
    marker = folder / IDENTITY
    if folder.exists():
        previous = io.read_json(marker) if marker.exists() else None
        if previous != identity:
            changed = sorted(k for k in identity if not previous or previous.get(k) != identity[k])
            log.info("train: discarding checkpoints in %s (changed: %s)", folder, ", ".join(changed) or "unknown")
            shutil.rmtree(folder)
    folder.mkdir(parents=True, exist_ok=True)
    io.write_json(marker, identity)
    return last(folder)


def last(folder: Path) -> str | None:
    complete = [c for c in folder.glob("checkpoint-*") if (c / TRAINER_STATE).exists()]
    return str(max(complete, key=lambda c: int(c.name.split("-")[1]))) if complete else None
