"""Shared fixtures: a copy of the project in a temporary git repository, and the base model built once."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
SHARED_DATA = ROOT.parent / "shared" / "data"

# A configuration small enough for a few minutes on 2 CPU cores; every stage still does the real thing.
SMALL = {
    "ingest": {"max_documents": 3},
    "synth_qa": {"per_document": 2, "max_new_tokens": 48},
    "synth_docs": {
        "max_new_tokens": 64,
        "generators": {
            "active_reading": {"per_document": 1, "strategies_max_new_tokens": 48},
            "focal_rewrite": {"per_document": 1, "pairing": "sampled", "strategies_max_new_tokens": 48},
        },
    },
    "mix": {"token_budgets": [1500]},
    "train": {"max_steps": 2, "max_length": 128, "effective_batch_size": 2, "per_device_batch_size": 1},
    "eval": {"max_questions": 10},
}


def env() -> dict[str, str]:
    e = dict(os.environ)
    e["PATH"] = f"{BIN}{os.pathsep}{e.get('PATH', '')}"
    e.update(HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", TOKENIZERS_PARALLELISM="false", PYTHONPATH="")
    return e


def sh(cmd: str | list[str], cwd: Path, check: bool = True, timeout: int = 1800) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(
        cmd, cwd=cwd, shell=isinstance(cmd, str), env=env(), text=True, capture_output=True, timeout=timeout
    )
    if check and proc.returncode != 0:
        raise AssertionError(
            f"command failed ({proc.returncode}): {cmd}\n--- stdout\n{proc.stdout[-4000:]}\n"
            f"--- stderr\n{proc.stderr[-6000:]}"
        )
    return proc


def deep_update(base: dict, changes: dict) -> dict:
    for key, value in changes.items():
        if isinstance(value, dict):
            deep_update(base.setdefault(key, {}), value)
        else:
            base[key] = value
    return base


def make_workspace(dest: Path, changes: dict | None = None) -> Path:
    """Copy the project's files (tracked and untracked, not ignored) into a fresh git repository."""
    files = subprocess.run(
        ["git", "ls-files", "-co", "--exclude-standard"], cwd=ROOT, text=True, capture_output=True, check=True
    ).stdout.split()
    for rel in files:
        src = ROOT / rel
        if src.is_file():
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / rel)
    params = yaml.safe_load((dest / "params.yaml").read_text())
    deep_update(params, changes or {})
    (dest / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    sh("git init -q && git add -A && git -c user.name=t -c user.email=t@t commit -qm init", dest)
    return dest


@pytest.fixture(scope="session")
def small_workspace(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    yield make_workspace(tmp_path_factory.mktemp("ws"), SMALL)


@pytest.fixture(scope="session")
def base_model(small_workspace: Path) -> Path:
    """The embedded default base model, built by Snakemake as a single target of the small workspace."""
    sh("snakemake --cores 2 results/models/base", small_workspace)
    return small_workspace / "results" / "models" / "base"
