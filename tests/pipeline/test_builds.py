"""The whole graph under Snakemake and under DVC, and selective rebuilds in both.

One small configuration runs end to end with `snakemake --cores 2`; then `smt record` makes DVC agree (the
selective rebuilds of every key and file are in tests/test_rebuild.py). A DVC remote serves a fresh clone; a
second workspace runs `dvc repro` from a clean state; and a real one-node SLURM cluster rebuilds the training
half of the graph to the same scores.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import polars as pl
import pytest
from helpers import SMALL, BackgroundBuild, dvc_status, sh, snakemake_pending
from slurm_cluster import ClusterUnavailable, SlurmCluster

from smt import inference
from smt.pipeline import graph as G
from smt.pipeline import params as P
from smt.pipeline import stage as ST
from smt.pipeline import stages as S

pytestmark = pytest.mark.pipeline

SCORE_KEYS = {
    "accuracy", "ci_low", "ci_high", "correct", "n", "condition", "benchmark", "recipe", "budget", "scorer", "prompts",
    "model", "params_fingerprint", "provenance", "scorers", "device", "dtype", "chance", "chat_template_kwargs",
}  # fmt: skip


def score_stems(params: dict) -> dict[tuple[str | None, str], str]:
    """(recipe or None, condition) -> the path of its score file without the suffix."""
    budget = params["mix"]["token_budgets"][0]
    stems = {(None, c): f"results/scores/demo/{c}" for c in ("closed_book_base", "rag_base")}
    for recipe in params["recipes"]:
        stems |= {(recipe, c): f"results/scores/demo/{recipe}/{budget}/{c}" for c in ("smt_closed_book", "smt_rag")}
    return stems


def check_scores(ws: Path, params: dict) -> None:
    questions = pl.read_parquet(ws / "results/data/demo/questions.parquet").height
    n = min(questions, params["eval"]["max_questions"] or questions)
    accuracy = {}
    for (recipe, condition), stem in score_stems(params).items():
        score = json.loads((ws / f"{stem}.json").read_text())
        assert SCORE_KEYS <= set(score), f"{condition}: missing {SCORE_KEYS - set(score)}"
        assert score["n"] == n and score["recipe"] == recipe
        assert 0.0 <= score["accuracy"] <= 1.0 and score["correct"] == round(score["accuracy"] * score["n"])
        assert score["condition"] == condition and score["scorer"] == "letter"
        assert set(score["prompts"]) == {"mc_letter"}
        assert (score["device"], score["dtype"]) == inference.pick("auto") and score["chance"] == 0.25
        preds = (ws / f"{stem}.predictions.jsonl").read_text().splitlines()
        assert len(preds) == score["n"]
        assert score["ci_low"] <= score["accuracy"] <= score["ci_high"]
        accuracy[(recipe, condition)] = score["accuracy"]
    if n >= 10:  # the excerpts hold the answers (too few questions could tie)
        assert accuracy[(None, "rag_base")] > accuracy[(None, "closed_book_base")], accuracy
    report = (ws / "results/report.md").read_text()
    assert "## demo" in report and "## Scaling" in report and "C = 2MD + 6ND" in report
    assert "## Every trained model against RAG (base)" in report and "## Every scorer run" in report
    assert report.count("| letter |") == len(score_stems(params))  # one row per condition and trained model
    for recipe in params["recipes"]:  # one row per recipe, and its line in the summary
        assert f"| {recipe} (" in report and f"- {recipe} beats RAG on " in report
    assert (ws / "results/report.html").read_text().count("data:image/png;base64,") == 1
    compute = json.loads((ws / "results/compute.json").read_text())
    assert compute["training_flops_6nd"] > 0 and compute["generation_flops_2md"] > 0
    assert compute["training_runs"] == len(params["recipes"]) * len(params["mix"]["token_budgets"])
    retrieval = json.loads((ws / "results/retrieval/demo/retrieval_report.json").read_text())
    assert retrieval["document_recall"] >= 0.9 and retrieval["questions"] == questions


def test_snakemake_builds_every_score(built: Path) -> None:
    params = P.load(built / "params.yaml")
    check_scores(built, params)
    manifest = json.loads((built / "results/synth/demo/qa.manifest.json").read_text())
    assert manifest["sampling"]["qa"] == {"temperature": 1.0, "top_p": 1.0, "max_new_tokens": 96}
    assert manifest["provenance"]["versions"]["transformers"] == "5.19.0"
    # generation sized to the budget: each stream holds its share of the largest budget in unique tokens
    for recipe in params["recipes"]:
        mix = json.loads((built / f"results/mix/demo/{recipe}/{params['mix']['token_budgets'][0]}/mix_report.json")
                         .read_text())  # fmt: skip
        assert mix["repeated_tokens"] == dict.fromkeys(mix["repeated_tokens"], 0)
        assert mix["unique_synthetic_tokens"] == mix["synthetic_tokens"] >= params["mix"]["token_budgets"][0]


def test_record_makes_dvc_agree_and_nothing_is_left_to_do(recorded: Path) -> None:
    built = recorded
    assert dvc_status(built) == set()
    assert snakemake_pending(built) == set()
    shown = json.loads(sh("dvc exp show --json", built).stdout)
    workspace = next(e for e in shown if e.get("rev") == "workspace")
    data = workspace["data"]
    assert data["params"]["params.yaml"]["data"]["mix"]["token_budgets"] == SMALL["mix"]["token_budgets"]
    # one metrics file (results/metrics.json, smt/eval/summary.py); score files keep their detail out of the table
    assert list(data["metrics"]) == ["results/metrics.json"]
    assert 0 <= data["metrics"]["results/metrics.json"]["data"]["demo"]["smt"]["rag"] <= 1


def test_dvc_remote_then_a_fresh_clone_pulls_the_results_without_recomputing(recorded: Path, tmp_path: Path) -> None:
    """The README's sharing recipe with a local-directory remote (an S3 remote works the same way)."""
    built = recorded
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


def copy_built(built: Path, dest: Path, roots: set[str]) -> set[str]:
    """A copy of the built workspace (mtimes and Snakemake's metadata kept) without the outputs of `roots`;
    returns the instances that must run again: the roots and everything downstream of them."""
    skip = {built / ".dvc" / "cache", built / ".dvc" / "tmp"}
    shutil.copytree(built, dest, symlinks=True, ignore=lambda d, names: [n for n in names if Path(d, n) in skip])
    params = P.load(dest / "params.yaml")
    for iid in roots:
        st, axes = G.instance(params, iid)
        for out in G.stage_outputs(st, axes, params).values():
            path = dest / out
            shutil.rmtree(path) if path.is_dir() else path.unlink()
    return G.downstream(params, roots)


def test_slurm_cluster_rebuilds_the_training_half_to_the_same_scores(built: Path, tmp_path: Path) -> None:
    """profiles/slurm on a real one-node SLURM cluster (tests/pipeline/slurm_cluster.py). It rebuilds, from the local
    run's training mix, the 8-GPU training job, every score of the trained model and the base model's
    closed-book score (1-GPU jobs), then the scaling fit and the report (CPU jobs). Each score equals the local
    run's; each job ran as an sbatch job on the partition its GPUs call for, with the devices SLURM granted;
    no other job ran again. (The other stages run the same command in the same way; under the SLURM executor
    each job costs tens of seconds of submission and polling, and the whole graph twice would not fit CI.)"""
    budget = SMALL["mix"]["token_budgets"][0]
    ws = tmp_path / "ws"
    rerun = copy_built(built, ws, {f"train_smt@demo-{budget}", "eval_closed_book_base@demo"})
    assert snakemake_pending(ws) == rerun
    try:
        cluster = SlurmCluster().start()
    except ClusterUnavailable as exc:
        pytest.skip(f"no SLURM cluster on this machine: {exc}")
    try:
        # squeue for job states: without accounting storage, sacct cannot answer. The fake GPUs have no CUDA,
        # so the 8-GPU training job runs one process, and says so to the parse-time check of the batch split
        sh(
            cluster.shell_prefix() + "SMT_TRAIN_PROCESSES=1 timeout --kill-after=30 900 snakemake "
            "--workflow-profile profiles/slurm "
            "--jobs 3 --slurm-status-command squeue --slurm-init-seconds-before-status-checks 2",
            ws,
            timeout=1000,
        )
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n{cluster.logs()}") from None
    finally:
        cluster.stop()
    params = P.load(ws / "params.yaml")
    check_scores(ws, params)
    same = ("accuracy", "correct", "n", "condition", "benchmark", "scorer", "params_fingerprint")
    for stem in score_stems(params).values():
        path = f"{stem}.json"
        local, cluster_run = json.loads((built / path).read_text()), json.loads((ws / path).read_text())
        assert {k: cluster_run[k] for k in same} == {k: local[k] for k in same}, path
    for st in S.STAGES:
        for axes in G.instances(st, params):
            log = (ws / ST.log_path(st, axes)).read_text()
            job = re.search(r"GPUs requested (\d+).*SLURM job \d+ \(partition (\w+)\)", log)
            if ST.instance_id(st, axes) not in rerun:
                assert job is None, f"{ST.instance_id(st, axes)} ran again on the cluster"
                continue
            assert job, f"{ST.instance_id(st, axes)} did not run as a SLURM job:\n{log[-2000:]}"
            assert job[2] == ("gpu" if int(job[1]) else "cpu"), job[0]
    train_log = (ws / f"results/logs/train/demo-smt-{budget}.log").read_text()
    assert re.search(r"GPUs requested 8, CUDA_VISIBLE_DEVICES='0,1,2,3,4,5,6,7' .*\(partition gpu\)", train_log)
    assert "SLURM job" in (ws / "results/logs/report/all.log").read_text()  # a CPU job: checked above
    eval_log = (ws / "results/logs/eval_closed_book_base/demo.log").read_text()
    assert re.search(r"GPUs requested 1, CUDA_VISIBLE_DEVICES='[0-7]' .*SLURM job \d+ \(partition gpu\)", eval_log)
    assert snakemake_pending(ws) == set()


def test_dvc_repro_from_clean_state_then_sync(dvc_from_clean: BackgroundBuild) -> None:
    """Every stage once more, one at a time as DVC runs them (started at collection, see conftest.py), including
    the DVC-only path where a generation stage runs all its shards itself; then `smt sync` makes Snakemake agree."""
    code, log = dvc_from_clean.wait(timeout=1500)
    assert code == 0, f"dvc repro exited with {code}:\n{log[-6000:]}"
    ws = dvc_from_clean.ws
    check_scores(ws, P.load(ws / "params.yaml"))
    assert dvc_status(ws) == set()
    sh("python -m smt sync", ws)
    assert snakemake_pending(ws) == set()
    assert dvc_status(ws) == set()
