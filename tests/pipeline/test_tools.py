"""`smt record` records nothing stale: it refuses, naming the instances, while Snakemake has work left or an
output was built from other params values than params.yaml gives now (an output put back from another run, or
touched so that Snakemake sees nothing to do)."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

import pytest
from helpers import make_workspace, set_key, sh

from smt.pipeline import params as P
from smt.pipeline import tools
from smt.pipeline.runner import run_stage

DRY_RUN = """
rule synth_qa_shard:
    wildcards: benchmark=demo, shard=1
Shell command: SMT_JOB_GPUS=1 python -m smt synth_qa --benchmark demo --shard 1
rule mix:
Shell command: SMT_JOB_GPUS=0 python -m smt mix --benchmark demo --recipe smt --budget 4000
localrule report:
Shell command: SMT_JOB_GPUS=0 python -m smt report
localrule all:
"""


def test_the_dry_run_names_instances_as_dvc_does() -> None:
    assert tools.planned(DRY_RUN) == ["mix_smt@demo-4000", "report", "synth_qa@demo"]
    assert tools.planned("localrule download:\nlocalrule all:\n") == ["download"]
    assert tools.planned("Nothing to be done (all requested files are present and up to date).") == []


@pytest.fixture(scope="module")
def ws(tmp_path_factory: pytest.TempPathFactory) -> Path:
    ws = make_workspace(tmp_path_factory.mktemp("record"), {"ingest": {"max_documents": 1}})
    with contextlib.chdir(ws):
        run_stage("ingest", {"benchmark": "demo"})
    return ws


def test_an_output_built_from_other_params_is_named_even_when_snakemake_sees_nothing_to_do(ws: Path) -> None:
    with contextlib.chdir(ws):
        assert tools.stale_outputs(P.load()) == []
    set_key(ws, "ingest.max_documents", 2)
    sh("python -m smt check", ws)  # the params stamp follows the change ...
    for path in (ws / "results/data/demo").iterdir():
        os.utime(path)  # ... and the outputs are touched into looking newer
    with contextlib.chdir(ws):
        (stale,) = tools.stale_outputs(P.load())
    assert stale.startswith("ingest@demo: results/data/demo/ingest_details.json (built with params ")
    proc = sh("python -m smt record", ws, check=False)
    assert proc.returncode == 1
    pending, _, stale_part = proc.stderr.partition("output(s) were built from other params values")
    assert "smt record: refused: Snakemake has work left for " in pending and "model" in pending
    assert "ingest@demo" not in pending, "Snakemake does not see it"
    assert "ingest@demo: results/data/demo/ingest_details.json" in stale_part
    assert not (ws / "dvc.lock").exists(), "nothing recorded"
