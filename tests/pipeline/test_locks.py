"""One run per stage instance: a second run, whoever starts it (Snakemake, DVC, by hand), fails at once naming the
instance and the holder; shards of one instance run side by side but never beside a run of the whole instance;
a killed holder leaves no stale lock."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers import env, make_workspace, sh

from smt.pipeline import locks
from smt.pipeline import stages as S

HOLD = """
import sys, time
from smt.pipeline import locks, stages
shard = None if sys.argv[2] == "-" else int(sys.argv[2])
with locks.hold(stages.stage(sys.argv[1]), {"benchmark": "demo"}, shard):
    print("held", flush=True)
    time.sleep(600)
"""


@pytest.fixture(scope="module")
def ws(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_workspace(tmp_path_factory.mktemp("locks"), {"ingest": {"max_documents": 1}})


@contextlib.contextmanager
def holder(ws: Path, stage: str, shard: int | None = None) -> Iterator[subprocess.Popen[str]]:
    """Another process holding the lock of `stage` on demo (or of one of its shards) until the block ends."""
    args = [sys.executable, "-c", HOLD, stage, "-" if shard is None else str(shard)]
    proc = subprocess.Popen(args, cwd=ws, env=env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "held", proc.stderr
        yield proc
    finally:
        proc.kill()
        proc.wait()


def test_a_second_run_fails_at_once_naming_the_instance_and_the_holder(ws: Path) -> None:
    with holder(ws, "ingest") as other:
        proc = sh("python -m smt ingest --benchmark demo", ws, check=False, timeout=120)
        listed = sh("python -m smt locks", ws).stdout
    assert proc.returncode == 1
    assert f"smt ingest: ingest@demo is being built by another run (pid {other.pid} on " in proc.stderr
    assert f"results/.locks/ingest/demo.lock: pid {other.pid}" in listed
    assert not (ws / "results/data/demo").exists(), "the second run wrote nothing"
    sh("python -m smt ingest --benchmark demo", ws)  # the holder was killed: no stale lock
    assert (ws / "results/data/demo/questions.parquet").exists()


def test_shards_share_their_instance_but_exclude_a_whole_run(ws: Path) -> None:
    synth_qa = S.stage("synth_qa")
    with holder(ws, "synth_qa", 0) as first, holder(ws, "synth_qa", 1) as second, contextlib.chdir(ws):
        with pytest.raises(
            locks.Busy, match=rf"^synth_qa@demo is being built by another run \(pid {first.pid} .*pid {second.pid} "
        ):
            with locks.hold(synth_qa, {"benchmark": "demo"}):
                pass
        with pytest.raises(
            locks.Busy, match=rf"^synth_qa@demo shard 0 is being built by another run \(pid {first.pid} "
        ):
            with locks.hold(synth_qa, {"benchmark": "demo"}, 0):
                pass
        with locks.hold(synth_qa, {"benchmark": "demo"}, 2):  # another shard of the same instance
            pass
    with holder(ws, "synth_qa") as whole, contextlib.chdir(ws):
        with pytest.raises(locks.Busy, match=rf"^synth_qa@demo is being built by another run \(pid {whole.pid} "):
            with locks.hold(synth_qa, {"benchmark": "demo"}, 0):
                pass
    with contextlib.chdir(ws), locks.hold(synth_qa, {"benchmark": "demo"}):
        assert locks.held(ws / "results/.locks") != []


def test_dvc_repro_never_runs_a_stage_beside_another_run_of_it(ws: Path) -> None:
    """Snakemake's jobs meet the same lock (tests/faults/test_kill_points.py kills a driver and runs again)."""
    sh("rm -rf results/data", ws)
    with holder(ws, "ingest") as other:
        proc = sh("dvc repro --single-item ingest@demo", ws, check=False, timeout=300)
    assert proc.returncode != 0
    assert f"ingest@demo is being built by another run (pid {other.pid} " in proc.stdout + proc.stderr
    assert not (ws / "results/data/demo/questions.parquet").exists()


def test_a_killed_holder_releases_its_lock(ws: Path) -> None:
    with holder(ws, "rag_index") as other:
        os.kill(other.pid, signal.SIGKILL)
        other.wait()
        with contextlib.chdir(ws), locks.hold(S.stage("rag_index"), {"benchmark": "demo"}):
            assert (ws / "results/.locks/rag_index/demo.lock").exists()
