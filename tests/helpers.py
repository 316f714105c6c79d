"""What the tests share: running commands in the project's environment, scratch workspaces, and the two
tools' view of what is out of date."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
SHARED_DATA = ROOT.parent / "shared" / "data"

# The smoke configuration (config/smoke.params.yaml): small enough for a few minutes on 2 CPU cores; every
# stage still does the real thing.
SMALL = yaml.safe_load((ROOT / "config" / "smoke.params.yaml").read_text())


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
    sh("python -m smt render-dvc", dest)  # its exact inputs follow the benchmarks, budgets and generators
    sh("git init -q && git add -A && git -c user.name=t -c user.email=t@t commit -qm init", dest)
    return dest


def snakemake_pending(ws: Path) -> set[str]:
    """Stage instances `snakemake -n` would run."""
    return snakemake_planned(sh("snakemake -n --cores 2", ws).stdout)


def snakemake_planned(out: str) -> set[str]:
    """Stage instances in the output of `snakemake -n -p`, named as DVC names them (smt.pipeline.tools.planned,
    itself checked against a literal dry run in tests/pipeline/test_tools.py)."""
    from smt.pipeline import tools

    return set(tools.planned(out))


def dvc_status(ws: Path) -> set[str]:
    """The stages `dvc status` reports changed (the `refresh` stage, which rewrites the derived inputs
    params.yaml names on every `dvc repro`, is always listed and left out)."""
    return set(json.loads(sh("dvc status --json", ws).stdout or "{}")) - {"refresh"}


def dvc_pending(ws: Path) -> set[str]:
    """Stage instances `dvc repro` would run, from DVC's own status and graph: the changed stages and every
    stage downstream of them. (`dvc repro --dry --force-downstream` would also force every reader of the
    always-run `refresh` stage, whose outputs change only with what they derive from.)"""
    from dvc.repo import Repo

    with contextlib.chdir(ws), Repo(str(ws)) as repo:  # stage addresses are relative to the working directory
        todo = list(set(repo.status()) - {"refresh"})
        readers: dict[str, set[str]] = {}
        for consumer, producer in repo.index.graph.edges:
            readers.setdefault(producer.addressing, set()).add(consumer.addressing)
    pending: set[str] = set()
    while todo:
        stage = todo.pop()
        if stage not in pending:
            pending.add(stage)
            todo.extend(readers.get(stage, ()))
    return pending


def set_key(ws: Path, key: str, value: object) -> object:
    """Set one dotted key of the workspace's params.yaml; return the old value."""
    params = yaml.safe_load((ws / "params.yaml").read_text())
    *parents, last = key.split(".")
    node = params
    for part in parents:
        node = node[part]
    old, node[last] = node[last], value
    (ws / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    return old


class BackgroundBuild:
    """A command in a fresh workspace, started now and waited for later; its output goes to a log file."""

    def __init__(self, cmd: list[str], changes: dict) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="smt-background-"))
        (self.root / "ws").mkdir()
        self.ws = make_workspace(self.root / "ws", changes)
        self.log = self.root / "build.log"
        with self.log.open("wb") as log:
            self.proc = subprocess.Popen(
                cmd, cwd=self.ws, env={**env(), "OMP_NUM_THREADS": "1"}, stdout=log, stderr=subprocess.STDOUT
            )

    def wait(self, timeout: float) -> tuple[int | None, str]:
        """The exit code (None if still running after `timeout` seconds) and the output."""
        try:
            code: int | None = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            code = None
        return code, self.log.read_text(errors="replace")

    def stop(self, keep: bool) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        if not keep:
            shutil.rmtree(self.root, ignore_errors=True)


def tiny_llama(folder: Path, tokenizer_from: Path) -> Path:
    """A randomly initialized two-layer Llama with the tokenizer of `tokenizer_from` (the embedded model's, or any
    other), saved as a local folder."""
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    tokenizer = AutoTokenizer.from_pretrained(tokenizer_from)
    config = LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256, tie_word_embeddings=True,
    )  # fmt: skip
    LlamaForCausalLM(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder
