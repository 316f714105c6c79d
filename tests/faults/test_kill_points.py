"""Kill points: each long-running stage killed with SIGKILL at more than one point (smt/faults.py, SMT_KILL_AT),
then run again, ends with exactly the outputs of an uninterrupted run, nothing lost or duplicated and no scratch
left behind. Generation talks to a fake endpoint (tests/fake_endpoint.py) so no model is needed, which also lets
the same stage run through every kind of endpoint fault; the index build is real, scoring runs the embedded
model. (Training's kill points are in tests/train/test_sft.py, which holds the uninterrupted reference run.)"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import yaml
from fake_endpoint import FAULTS, MALFORMED, MODEL, FakeEndpoint
from helpers import deep_update, env, make_workspace, sh

from smt import faults, io
from smt.pipeline import locks
from smt.pipeline.runner import run_stage

SYNTH = {
    "ingest": {"max_documents": 3},
    # shard 0: 2 documents, 4 requests, one call; one round of one pair per request (no token target to chase)
    "generation": {"backend": "http", "batch_size": 4, "shards": 2, "max_rounds": 1},
    "synth_qa": {"per_document": 2, "per_request": 1},
}
HTTP = {"model": MODEL, "concurrency": 2, "max_retries": 8, "backoff_seconds": 0.01, "timeout_seconds": 0.5}
QA, QA_MANIFEST = "results/synth/demo/qa.jsonl", "results/synth/demo/qa.manifest.json"
SHARD0 = "results/synth/demo/shards/qa/0"
JOURNAL0 = "results/.journal/synth_qa@demo/0-of-2.jsonl"


def stage(ws: Path, name: str, axes: dict[str, str], kill: str | None = None) -> subprocess.CompletedProcess[str]:
    """The stage command as Snakemake or DVC runs it, killed at `kill` if given."""
    cmd = [sys.executable, "-m", "smt", name, *(f"--{a}={v}" for a, v in axes.items())]
    extra = {faults.VAR: kill} if kill else {}
    proc = subprocess.run(cmd, cwd=ws, env={**env(), **extra}, capture_output=True, text=True, timeout=600)
    expected = -9 if kill else 0
    assert proc.returncode == expected, f"{cmd} with {extra}: exit {proc.returncode}\n{proc.stderr[-3000:]}"
    return proc


def scratch(ws: Path) -> list[Path]:
    """Atomic-write temporaries anywhere under results/ (a killed run's, if the rerun did not remove them)."""
    return sorted(ws.glob("results/**/.*.tmp"))


@pytest.fixture(scope="module")
def endpoint() -> Iterator[FakeEndpoint]:
    with FakeEndpoint() as fake:
        yield fake


@pytest.fixture(scope="module")
def synth_ws(tmp_path_factory: pytest.TempPathFactory, endpoint: FakeEndpoint) -> Path:
    """Three demo documents ingested and a model folder that only names the model the endpoint serves."""
    ws = make_workspace(tmp_path_factory.mktemp("kill"), deep_update(SYNTH, {"generation": {"http": {
        **HTTP, "base_url": endpoint.url}}}))  # fmt: skip
    with contextlib.chdir(ws):
        run_stage("ingest", {"benchmark": "demo"})
    sh("python -m smt check", ws)  # every params stamp written, so that the model folder below is newer
    io.write_json(ws / "results/models/base/smollm2/smt_manifest.json", {"model_id": MODEL, "revision": "fake-1"})
    return ws


def qa_outputs(ws: Path) -> tuple[list[dict], list[dict]]:
    return io.read_jsonl(ws / QA), io.read_json(ws / QA_MANIFEST)["rejected"]


@pytest.fixture(scope="module")
def qa_reference(synth_ws: Path) -> tuple[list[dict], list[dict]]:
    stage(synth_ws, "synth_qa", {"benchmark": "demo"})
    records, rejected = qa_outputs(synth_ws)
    assert len(records) == 6 and rejected == []
    return records, rejected


def fresh(ws: Path) -> None:
    """No generation outputs and no journal: the next run generates everything."""
    for path in [*(ws / "results/synth").glob("*"), ws / "results/.journal"]:
        if path.exists():
            path.unlink() if path.is_file() else shutil.rmtree(path)


# point, then what the killed run must have left: the journal entries of shard 0, whether its records exist,
# and the completions the rerun takes from the journal instead of the endpoint
GENERATION = [
    ("generation.completion:2", 2, False, 2),  # in the middle of a backend call of 4 requests
    ("generation.shard_records", 4, True, 4),  # shard 0's records written, its manifest not
    ("generation.shard_manifest", 4, True, 0),  # shard 0 complete
    ("generation.merged_records", 4, True, 0),  # both shards complete, the merged records written, no manifest
]


@pytest.mark.parametrize(("point", "journaled", "records", "resumed"), GENERATION)
def test_a_generation_stage_killed_anywhere_resumes_to_the_same_records(
    synth_ws: Path, qa_reference: tuple, endpoint: FakeEndpoint, point: str, journaled: int, records: bool, resumed: int
) -> None:
    fresh(synth_ws)
    stage(synth_ws, "synth_qa", {"benchmark": "demo"}, kill=point)
    journal = synth_ws / JOURNAL0
    assert (len(journal.read_text().splitlines()) - 1 if journal.exists() else 0) == journaled
    assert (synth_ws / f"{SHARD0}.jsonl").exists() == records
    assert not (synth_ws / QA_MANIFEST).exists()
    posts = endpoint.posts
    stage(synth_ws, "synth_qa", {"benchmark": "demo"})
    assert qa_outputs(synth_ws) == qa_reference
    manifest = io.read_json(synth_ws / QA_MANIFEST)
    shard0 = manifest["shards"][0]["counts"]
    if point != "generation.merged_records":  # a merge alone generates nothing, and sums the shards' first runs
        assert shard0["resumed"] == resumed and manifest["counts"]["requested"] == 6
        assert endpoint.posts - posts == 6 - resumed - (4 if point == "generation.shard_manifest" else 0)
    else:
        assert endpoint.posts == posts
    assert not (synth_ws / "results/synth/demo/shards").exists() and scratch(synth_ws) == []


def test_a_generation_stage_through_every_endpoint_fault_writes_the_same_records(
    synth_ws: Path, qa_reference: tuple, endpoint: FakeEndpoint
) -> None:
    fresh(synth_ws)
    endpoint.faults = list(FAULTS)
    try:
        stage(synth_ws, "synth_qa", {"benchmark": "demo"})
    finally:
        endpoint.faults = []
    assert qa_outputs(synth_ws) == qa_reference
    backend = io.read_json(synth_ws / QA_MANIFEST)["backend"]
    assert backend["retries"] == len(FAULTS) and backend["malformed_answers"] == len(MALFORMED)


def test_a_damaged_journal_entry_is_skipped_counted_and_generated_again(synth_ws: Path, qa_reference: tuple) -> None:
    fresh(synth_ws)
    stage(synth_ws, "synth_qa", {"benchmark": "demo"}, kill="generation.completion:3")
    journal = synth_ws / JOURNAL0
    header, first, _, third = journal.read_bytes().splitlines()
    journal.write_bytes(b"\n".join([header, first, b'{"key": "\xff\xfe', third]) + b"\n")  # damaged in the middle
    proc = stage(synth_ws, "synth_qa", {"benchmark": "demo"})
    assert "skipped 1 damaged entries (lines 3)" in proc.stderr
    assert qa_outputs(synth_ws) == qa_reference
    counts = io.read_json(synth_ws / QA_MANIFEST)["shards"][0]["counts"]
    assert counts["resumed"] == 2


def wait_for(condition: Callable[[], bool], what: str, seconds: float = 120) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, f"no {what} after {seconds:g} s"
        time.sleep(0.1)


def test_after_a_killed_snakemake_driver_its_orphan_and_a_new_job_never_overlap(
    synth_ws: Path, endpoint: FakeEndpoint
) -> None:
    """The README's recovery: the driver is killed while a shard job waits on the endpoint; after `snakemake
    --unlock` the new job stops at once naming the orphan; once the orphan is done, nothing runs twice."""
    fresh(synth_ws)
    target = [f"{SHARD0}.jsonl"]
    lock = synth_ws / "results/.locks/synth_qa/demo.shard0.lock"
    posts = endpoint.posts
    original = (synth_ws / "params.yaml").read_text()
    params = deep_update(yaml.safe_load(original), {"generation": {"http": {"timeout_seconds": 120}}})
    (synth_ws / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))  # answers wait for the test
    endpoint.gate.clear()
    try:
        driver = subprocess.Popen(["snakemake", "--cores", "1", *target], cwd=synth_ws, env=env(),
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
        wait_for(lambda: lock.exists() and locks.held(synth_ws / "results/.locks") != [], "shard job holding its lock")
        orphan = json.loads(lock.read_text())["pid"]
        driver.kill()
        driver.wait()
        assert os.path.exists(f"/proc/{orphan}"), "the job outlives its driver"
        sh("snakemake --unlock", synth_ws)
        second = sh(["snakemake", "--cores", "1", *target], synth_ws, check=False)
        assert second.returncode != 0
        assert f"synth_qa@demo shard 0 is being built by another run (pid {orphan} " in second.stdout + second.stderr
    finally:
        endpoint.gate.set()
    try:
        wait_for(lambda: locks.held(synth_ws / "results/.locks") == [], "end of the orphan")
        nothing = sh(["snakemake", "--cores", "1", *target], synth_ws)
    finally:
        (synth_ws / "params.yaml").write_text(original)
    assert "Nothing to be done" in nothing.stdout + nothing.stderr, "the orphan's shard is complete"
    assert endpoint.posts - posts == 4, "each request sent once, by the orphan"


# ---------------------------------------------------------------------------------------------- index build

INDEX = "results/index/demo"


def index_files(ws: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted((ws / INDEX).iterdir())}


def test_an_index_build_killed_twice_ends_with_the_same_index(synth_ws: Path) -> None:
    """Runs killed after the BM25 arrays and after the dense index (before the swap into place); the runs that
    finish run in this process, which has the embedding libraries loaded already."""
    with contextlib.chdir(synth_ws):
        run_stage("rag_index", {"benchmark": "demo"})
    reference = index_files(synth_ws)
    for point in ("index.bm25", "index.dense"):
        stage(synth_ws, "rag_index", {"benchmark": "demo"}, kill=point)
        assert index_files(synth_ws) == reference, "the finished index stays in place until a new one replaces it"
        assert len(scratch(synth_ws)) == 1, "the killed build's scratch folder"
    with contextlib.chdir(synth_ws):
        run_stage("rag_index", {"benchmark": "demo"})
    assert index_files(synth_ws) == reference and scratch(synth_ws) == []


# --------------------------------------------------------------------------------------------------- scoring

SCORE = "results/scores/demo/closed_book_base"


@pytest.fixture(scope="module")
def eval_ws(tmp_path_factory: pytest.TempPathFactory, base_model: Path) -> Path:
    ws = make_workspace(tmp_path_factory.mktemp("killeval"), {"ingest": {"max_documents": 1}, "eval": {
        "max_questions": 2}})  # fmt: skip
    (ws / "results/models/base").mkdir(parents=True)
    (ws / "results/models/base/smollm2").symlink_to(base_model)
    with contextlib.chdir(ws):
        run_stage("ingest", {"benchmark": "demo"})
    return ws


def scored(ws: Path) -> tuple[list[dict], dict]:
    summary = json.loads((ws / f"{SCORE}.json").read_text())
    return io.read_jsonl(ws / f"{SCORE}.predictions.jsonl"), summary


def test_scoring_killed_at_two_points_ends_with_the_same_scores(eval_ws: Path) -> None:
    with contextlib.chdir(eval_ws):
        run_stage("eval_closed_book_base", {"benchmark": "demo"})
    reference = scored(eval_ws)
    for path in eval_ws.glob(f"{SCORE}*"):
        path.unlink()
    stage(eval_ws, "eval_closed_book_base", {"benchmark": "demo"}, kill="eval.question:1")
    assert list(eval_ws.glob(f"{SCORE}*")) == []
    stage(eval_ws, "eval_closed_book_base", {"benchmark": "demo"}, kill="eval.predictions")
    assert [p.name for p in eval_ws.glob(f"{SCORE}*")] == ["closed_book_base.predictions.jsonl"]
    with contextlib.chdir(eval_ws):
        run_stage("eval_closed_book_base", {"benchmark": "demo"})
    assert scored(eval_ws) == reference and reference[1]["n"] == 2 and scratch(eval_ws) == []
