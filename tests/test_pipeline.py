"""The whole graph under Snakemake and under DVC, and selective rebuilds in both.

One small configuration runs end to end with `snakemake --cores 2`; then `smt record` makes DVC agree; then for
one key of every stage (and a source edit), both tools must find out of date exactly the readers of that key
and their descendants, as the registry computes them. A second workspace runs `dvc repro` from a clean state.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import polars as pl
import pytest
import yaml
from conftest import SMALL, make_workspace, sh
from slurm_cluster import ClusterUnavailable, SlurmCluster

from smt import params as P
from smt import registry as R

pytestmark = pytest.mark.pipeline

SCORE_KEYS = {
    "accuracy", "ci_low", "ci_high", "correct", "n", "condition", "benchmark", "budget", "scorer", "prompts", "model",
    "params_fingerprint", "provenance",
}  # fmt: skip


def snakemake_pending(ws: Path) -> set[str]:
    """Stage instances `snakemake -n` would run, read from the commands it prints (a shard job, `--shard i`,
    counts as its stage instance)."""
    out = sh("snakemake -n --cores 2", ws).stdout
    pending = set()
    for stage, args in re.findall(r"python -m smt (\w+)((?: --(?!shard )\w+ \S+)*)", out):
        values = re.findall(r"--\w+ (\S+)", args)
        pending.add(f"{stage}@{'-'.join(values)}" if values else stage)
    return pending


def dvc_pending(ws: Path) -> set[str]:
    """Stage instances `dvc repro` would run: changed stages and everything downstream of them."""
    out = sh("dvc repro --dry --force-downstream", ws).stdout
    return set(re.findall(r"Running stage '([^']+)'", out))


def dvc_status(ws: Path) -> set[str]:
    return set(json.loads(sh("dvc status --json", ws).stdout or "{}"))


def check_scores(ws: Path, params: dict) -> None:
    questions = pl.read_parquet(ws / "results/data/demo/questions.parquet").height
    budget = params["mix"]["token_budgets"][0]
    for condition in R.CONDITIONS:
        stem = (
            f"results/scores/demo/{budget}/{condition}"
            if condition.startswith("smt")
            else f"results/scores/demo/{condition}"
        )
        score = json.loads((ws / f"{stem}.json").read_text())
        assert SCORE_KEYS <= set(score), f"{condition}: missing {SCORE_KEYS - set(score)}"
        assert score["n"] == min(questions, params["eval"]["max_questions"] or questions)
        assert 0.0 <= score["accuracy"] <= 1.0 and score["correct"] == round(score["accuracy"] * score["n"])
        assert score["condition"] == condition and score["scorer"] == "loglik"
        preds = (ws / f"{stem}.predictions.jsonl").read_text().splitlines()
        assert len(preds) == score["n"]
        assert score["ci_low"] <= score["accuracy"] <= score["ci_high"]
    scores = {c: json.loads((ws / R.score_path(c).replace("{benchmark}", "demo").replace("{budget}", str(budget)))
                            .read_text())["accuracy"] for c in R.CONDITIONS}  # fmt: skip
    assert scores["rag_base"] > scores["closed_book_base"], scores  # the excerpts hold the answers
    report = (ws / "results/report.md").read_text()
    assert "| demo |" in report and "## Scaling" in report and "C = 2MD + 6ND" in report
    assert (ws / "results/report.html").read_text().count("data:image/png;base64,") == 1
    compute = json.loads((ws / "results/compute.json").read_text())
    assert compute["training_flops_6nd"] > 0 and compute["generation_flops_2md"] > 0
    retrieval = json.loads((ws / "results/retrieval/demo/retrieval_report.json").read_text())
    assert retrieval["document_recall"] >= 0.9 and retrieval["questions"] == questions


@pytest.fixture(scope="module")
def built(small_workspace: Path) -> Path:
    sh("snakemake --cores 2", small_workspace, timeout=1500)
    return small_workspace


def test_snakemake_builds_every_score(built: Path) -> None:
    check_scores(built, P.load(built / "params.yaml"))
    manifest = json.loads((built / "results/synth/demo/qa.manifest.json").read_text())
    assert manifest["counts"]["requested"] == 5 * SMALL["synth_qa"]["per_document"]
    assert manifest["sampling"]["qa"] == {"temperature": 1.0, "top_p": 1.0, "max_new_tokens": 48}
    assert manifest["provenance"]["versions"]["transformers"] == "5.19.0"


def test_record_makes_dvc_agree_and_nothing_is_left_to_do(built: Path) -> None:
    sh("python -m smt record", built)
    assert dvc_status(built) == set()
    assert snakemake_pending(built) == set()
    shown = json.loads(sh("dvc exp show --json", built).stdout)
    workspace = next(e for e in shown if e.get("rev") == "workspace")
    data = workspace["data"]
    assert data["params"]["params.yaml"]["data"]["mix"]["token_budgets"] == SMALL["mix"]["token_budgets"]
    metrics = data["metrics"]
    assert "accuracy" in metrics["results/scores/demo/1500/smt_rag.json"]["data"]


# One key per family of stages (each check costs two dry runs of both tools on the whole graph; CI time is
# bounded): data, generation, mixing, training, retrieval, evaluation, and the seed that reaches most stages.
KEYS = [
    ("ingest.max_documents", 4),
    ("synth_qa.temperature", 0.9),
    ("mix.qa_share", 0.6),
    ("train.learning_rate", 0.0002),
    ("rag.top_k", 3),
    ("eval.batch_size", 4),
    ("seed", 7),
]


def set_key(ws: Path, key: str, value: object) -> object:
    params = yaml.safe_load((ws / "params.yaml").read_text())
    *parents, last = key.split(".")
    node = params
    for part in parents:
        node = node[part]
    old, node[last] = node[last], value
    (ws / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    return old


@pytest.mark.parametrize(("key", "value"), KEYS, ids=[k for k, _ in KEYS])
def test_changing_one_key_rebuilds_exactly_its_closure(built: Path, key: str, value: object) -> None:
    sh("python -m smt record", built)
    params = P.load(built / "params.yaml")
    expected = R.downstream(params, R.readers_of_key(params, key))
    old = set_key(built, key, value)
    try:
        assert snakemake_pending(built) == expected
        assert dvc_pending(built) == expected
        assert dvc_status(built) == R.readers_of_key(params, key)
    finally:
        set_key(built, key, old)
    assert snakemake_pending(built) == set(), "a reverted value must not leave Snakemake wanting to rerun"
    assert dvc_status(built) == set()


def test_adding_a_token_budget_builds_only_that_budgets_model_and_scores(built: Path) -> None:
    sh("python -m smt record", built)
    old = set_key(built, "mix.token_budgets", [*SMALL["mix"]["token_budgets"], 3000])
    try:
        new = {f"{s}@demo-3000" for s in ("mix", "train", "eval_smt_closed_book", "eval_smt_rag")}
        new |= {"scaling@demo", "report"}  # the sweep's figure and the report read every budget
        assert snakemake_pending(built) == new
        assert dvc_pending(built) == new
    finally:
        set_key(built, "mix.token_budgets", old)
    assert snakemake_pending(built) == set()
    assert dvc_status(built) == set()


@pytest.mark.parametrize(
    ("path", "root"),
    [
        ("smt/stages/mix.py", f"mix@demo-{SMALL['mix']['token_budgets'][0]}"),
        ("smt/benchmarks/demo/questions.jsonl", "ingest@demo"),
    ],
    ids=["source module", "benchmark file"],
)
def test_editing_a_file_reruns_its_readers_in_both_tools(built: Path, path: str, root: str) -> None:
    sh("python -m smt record", built)
    edited = built / path
    original, stat = edited.read_bytes(), edited.stat()
    params = P.load(built / "params.yaml")
    expected = R.downstream(params, {root})
    if path.endswith(".py"):
        assert R.readers_of_file(params, path) == {root}
    edited.write_bytes(original + b"\n")
    try:
        assert snakemake_pending(built) == expected
        assert dvc_pending(built) == expected
    finally:
        edited.write_bytes(original)
        os.utime(edited, (stat.st_atime, stat.st_mtime))
    assert snakemake_pending(built) == set()


def test_dvc_repro_from_clean_state_then_sync(tmp_path: Path) -> None:
    ws = make_workspace(tmp_path, SMALL)
    sh("dvc repro", ws, timeout=1500)
    check_scores(ws, P.load(ws / "params.yaml"))
    assert dvc_status(ws) == set()
    sh("python -m smt sync", ws)
    assert snakemake_pending(ws) == set()
    assert dvc_status(ws) == set()


def test_dvc_remote_then_a_fresh_clone_pulls_the_results_without_recomputing(built: Path, tmp_path: Path) -> None:
    """The README's sharing recipe with a local-directory remote (an S3 remote works the same way)."""
    sh("python -m smt record", built)
    sh(f"dvc remote add --default --force storage {tmp_path / 'remote'}", built)
    sh("dvc push", built)
    sh("git add -A && git -c user.name=t -c user.email=t@t commit -qm 'results recorded in dvc.lock'", built)
    clone = tmp_path / "clone"
    sh(f"git clone -q {built} {clone}", tmp_path)
    assert not (clone / "results/scores").exists()
    sh("dvc pull", clone)
    assert dvc_status(clone) == set()
    scores = sorted(p.relative_to(built) for p in (built / "results/scores").rglob("*.json*"))
    assert scores and all((clone / p).read_bytes() == (built / p).read_bytes() for p in scores)
    sh("python -m smt sync", clone)
    assert snakemake_pending(clone) == set()
    assert dvc_status(clone) == set()
    # Snakemake's --touch leaves empty log files; a stage that ran would have written its log and benchmark
    ran = sorted(p for p in (clone / "results").glob("logs/*/*.log") if p.stat().st_size)
    assert ran == [] and not (clone / "results/benchmarks").exists(), f"a fresh clone recomputed: {ran}"


def test_slurm_cluster_runs_the_graph_to_the_same_scores(built: Path, tmp_path: Path) -> None:
    """profiles/slurm on a real one-node SLURM cluster (tests/slurm_cluster.py) gives the local run's score
    files; GPU rules run on the gpu partition with the devices SLURM granted them."""
    ws = make_workspace(tmp_path, SMALL)
    try:
        cluster = SlurmCluster().start()
    except ClusterUnavailable as exc:
        pytest.skip(f"no SLURM cluster on this machine: {exc}")
    try:
        # squeue for job states: without accounting storage, sacct cannot answer
        sh(
            cluster.shell_prefix() + "timeout --kill-after=30 1500 snakemake --workflow-profile profiles/slurm "
            "--jobs 1 --slurm-status-command squeue --slurm-init-seconds-before-status-checks 2",
            ws,
            timeout=1800,
        )
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n{cluster.logs()}") from None
    finally:
        cluster.stop()
    params = P.load(ws / "params.yaml")
    check_scores(ws, params)
    scores = sorted(p.relative_to(built) for p in (built / "results/scores").rglob("*.json"))
    assert len(scores) == len(R.CONDITIONS)
    same = ("accuracy", "correct", "n", "condition", "benchmark", "scorer", "params_fingerprint")
    for path in scores:
        local, cluster_run = json.loads((built / path).read_text()), json.loads((ws / path).read_text())
        assert {k: cluster_run[k] for k in same} == {k: local[k] for k in same}, path
    budget = params["mix"]["token_budgets"][0]
    train_log = (ws / f"results/logs/train/demo-{budget}.log").read_text()
    assert re.search(r"GPUs requested 8, CUDA_VISIBLE_DEVICES='0,1,2,3,4,5,6,7' .*\(partition gpu\)", train_log)
    eval_log = (ws / "results/logs/eval_closed_book_base/demo.log").read_text()
    assert re.search(r"GPUs requested 1, CUDA_VISIBLE_DEVICES='[0-7]' .*SLURM job \d+ \(partition gpu\)", eval_log)
    assert "GPUs requested 0" in (ws / "results/logs/ingest/demo.log").read_text()
    assert snakemake_pending(ws) == set()
