"""Params against the GPUs each profile gives its rules, checked before any job runs: by `python -m smt check
--profile` and by Snakemake's parse, with the keys and the GPU count named; and the params each profile
documents do fit it."""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path

import pytest
import yaml
from helpers import ROOT, SMALL, deep_update, sh

from smt.pipeline import params as P
from smt.pipeline import placement

PARAMS = P.load(ROOT / "params.yaml")  # the embedded default: effective batch 4, 2 per device


def counts(profile: str) -> dict[str, int]:
    return placement.profile_gpus(ROOT / "profiles" / profile)


def with_changes(changes: dict) -> dict:
    return deep_update(copy.deepcopy(PARAMS), changes)


def documented(profile: str) -> dict:
    """The params a profile's header says fit it (an indented YAML block in its comments)."""
    text = (ROOT / "profiles" / profile / "config.yaml").read_text()
    block = text.split("# Params that fit", 1)[1].split("\n", 2)[2]
    lines = []
    for line in block.splitlines():
        if not line.startswith("#   "):
            break
        lines.append(line[4:])
    return yaml.safe_load("\n".join(lines))


def test_gpu_counts_per_rule_come_from_the_profile(monkeypatch: pytest.MonkeyPatch) -> None:
    slurm = counts("slurm")
    assert slurm["train"] == 8 and slurm["synth_qa_shard"] == slurm["synth_docs_shard"] == 4
    assert slurm["eval_smt_rag"] == 1 and slurm["synth_qa"] == 0 and slurm["mix"] == 0
    assert counts("kubernetes")["train"] == 8
    assert set(counts("default").values()) == {0}
    monkeypatch.delenv("SMT_TRAIN_GPUS", raising=False)
    assert counts("gpu")["train"] == 1
    monkeypatch.setenv("SMT_TRAIN_GPUS", "8")
    assert counts("gpu")["train"] == 8


def test_the_default_params_do_not_fit_eight_training_gpus_and_the_message_says_why() -> None:
    found = placement.check(PARAMS, counts("slurm"), env={}, visible=0)
    (conflict,) = found.conflicts
    assert "rule train gets 8 GPU(s), so it runs 8 training process(es)" in conflict
    assert "train.effective_batch_size = 4 is not a multiple of train.per_device_batch_size x processes" in conflict
    assert "2 x 8 = 16; set train.effective_batch_size: 16" in conflict
    assert placement.check(PARAMS, counts("default"), env={}, visible=0).conflicts == []
    one_process = placement.check(PARAMS, counts("slurm"), env={"SMT_TRAIN_PROCESSES": "1"}, visible=0)
    assert one_process.conflicts == []  # the process count the train stage would launch


def test_a_smaller_per_device_batch_is_offered_when_it_fits() -> None:
    params = with_changes({"train": {"effective_batch_size": 24, "per_device_batch_size": 4}})
    (conflict,) = placement.check(params, {"train": 8}, env={}, visible=0).conflicts
    assert "4 x 8 = 32; set train.effective_batch_size: 32, or train.per_device_batch_size: 3" in conflict


@pytest.mark.parametrize("profile", ["gpu", "slurm", "kubernetes"])
def test_the_params_each_profile_documents_fit_it(profile: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SMT_TRAIN_GPUS", "8")
    params = with_changes(documented(profile))
    P.validate(params)
    assert placement.check(params, counts(profile), env={}, visible=0).conflicts == []
    assert params["train"]["effective_batch_size"] == 16  # the paper's batch


def test_vllm_tensor_parallelism_is_checked_against_the_shard_jobs_and_the_model(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    model = tmp_path / "results/models/base" / PARAMS["roles"]["generator"]
    model.mkdir(parents=True)
    (model / "config.json").write_text(json.dumps({"num_attention_heads": 9, "num_key_value_heads": 3}))
    monkeypatch.chdir(tmp_path)  # the generator's built base model folder, as a run would find it
    fitted = with_changes({"train": {"effective_batch_size": 16}})
    vllm = {"generation": {"backend": "vllm", "vllm": {"tensor_parallel_size": 8}}}
    found = placement.check(deep_update(copy.deepcopy(fitted), vllm), counts("slurm"), env={}, visible=0)
    assert found.conflicts == [
        f"generation.vllm.tensor_parallel_size = 8 but rule {rule} gets 4 GPU(s); give it at least 8 in the "
        "profile or set the size to 0 (chosen per job)"
        for rule in ("synth_qa_shard", "synth_docs_shard")
    ]
    vllm["generation"]["vllm"]["tensor_parallel_size"] = 2
    found = placement.check(deep_update(copy.deepcopy(fitted), vllm), counts("slurm"), env={}, visible=0)
    assert len(found.conflicts) == 2 and "= 2 does not divide the model's 9 attention heads" in found.conflicts[0]
    vllm["generation"]["vllm"]["tensor_parallel_size"] = 3
    found = placement.check(deep_update(copy.deepcopy(fitted), vllm), counts("slurm"), env={}, visible=0)
    assert found.conflicts == [] and "1 GPU(s) idle" in found.warnings[0]
    vllm["generation"]["vllm"]["tensor_parallel_size"] = 0
    assert placement.check(deep_update(copy.deepcopy(fitted), vllm), counts("slurm"), env={}, visible=0) == (
        placement.Findings()
    )


def test_training_on_the_cpu_of_a_gpu_machine_is_reported() -> None:
    found = placement.check(PARAMS, counts("default"), env={}, visible=8)
    assert found.conflicts == [] and "has 8 GPU(s) but rule train gets none under this profile" in found.warnings[0]
    assert placement.check(PARAMS, counts("gpu"), env={}, visible=8).warnings == []


def test_smt_check_fails_on_a_named_profile_that_does_not_fit(small_workspace: Path) -> None:
    """The smoke params (effective batch 2, 1 per device) fit one training GPU, not eight."""
    named = sh("python -m smt check --profile profiles/slurm", small_workspace, check=False)
    assert named.returncode == 1
    assert re.search(r"profiles/slurm: conflict: rule train gets 8 GPU\(s\).*= 2 is not a multiple", named.stderr)
    report = sh("python -m smt check", small_workspace)  # every profile reported; none named, none enforced
    assert "profiles/default: params fit its GPU counts" in report.stderr
    assert "profiles/kubernetes: conflict" in report.stderr and "train_smt@demo-600" in report.stdout


def test_snakemake_stops_at_parse_time_naming_the_keys_and_the_gpu_count(small_workspace: Path) -> None:
    eight = sh("SMT_TRAIN_GPUS=8 snakemake -n --workflow-profile profiles/gpu", small_workspace, check=False)
    assert eight.returncode != 0
    assert "params.yaml does not fit the GPUs the profile" in eight.stderr + eight.stdout
    assert "train.effective_batch_size = 2 is not a multiple of train.per_device_batch_size x processes = 1 x 8" in (
        eight.stderr + eight.stdout
    )
    two = sh("SMT_TRAIN_GPUS=2 snakemake -n -p --forceall --workflow-profile profiles/gpu", small_workspace)
    assert SMALL["train"]["effective_batch_size"] == 2  # built or not, the plan trains on both GPUs
    assert "SMT_JOB_GPUS=2 python -m smt train" in two.stdout
