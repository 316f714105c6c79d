"""The stage registry is the single source: its keys, files and graph, and dvc.yaml rendered from it."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest

from smt import dvc_render
from smt import params as P
from smt import registry as R
from smt.cli import IMPLEMENTATIONS

ROOT = Path(__file__).resolve().parents[1]
PARAMS = P.load(ROOT / "params.yaml")


def test_committed_dvc_yaml_matches_the_registry() -> None:
    assert (ROOT / "dvc.yaml").read_text() == dvc_render.render(PARAMS), (
        "dvc.yaml drifted from smt/registry.py: run `python -m smt render-dvc` and commit the result"
    )


@pytest.mark.parametrize("stage", R.STAGES, ids=lambda s: s.name)
def test_stage_declarations_point_at_real_things(stage: R.Stage) -> None:
    for axes in R.instances(stage, PARAMS):
        for key in stage.keys(axes):
            P.get(PARAMS, key)  # raises when the key is not in params.yaml
        for path in R.stage_code(stage, axes):
            assert (ROOT / path).is_file(), f"{stage.name}: code dependency {path} does not exist"
    assert stage.name in IMPLEMENTATIONS
    assert stage.outputs and stage.doc


def test_every_params_key_is_read_by_some_stage() -> None:
    def leaves(node: dict, prefix: str = "") -> list[str]:
        out = []
        for k, v in node.items():
            out += leaves(v, f"{prefix}{k}.") if isinstance(v, dict) else [f"{prefix}{k}"]
        return out

    declared = {k for s in R.STAGES for axes in R.instances(s, PARAMS) for k in s.keys(axes)}
    declared |= set(R.AXIS_VALUES_KEY.values())  # read as the stage instances themselves
    unused = [k for k in leaves(PARAMS) if not any(R.related_keys(k, d) for d in declared)]
    assert unused == [], f"params keys no stage declares (they could change nothing): {unused}"


def test_downstream_closure_of_a_training_key() -> None:
    closure = R.downstream(PARAMS, R.readers_of_key(PARAMS, "train.learning_rate"))
    assert closure == {
        "train@demo-4000", "eval_smt_closed_book@demo-4000", "eval_smt_rag@demo-4000", "scaling@demo", "report",
    }  # fmt: skip


def test_downstream_closure_of_a_generation_key() -> None:
    closure = R.downstream(PARAMS, R.readers_of_key(PARAMS, "synth_qa.temperature"))
    assert closure == {
        "synth_qa@demo",
        "synth_docs@demo-active_reading",
        "synth_docs@demo-focal_rewrite",
        "synth_contamination@demo",
        "synth_audit@demo",
        "mix@demo-4000",
        "train@demo-4000",
        "eval_smt_closed_book@demo-4000",
        "eval_smt_rag@demo-4000",
        "scaling@demo",
        "report",
    }


def test_outputs_never_overlap() -> None:
    """DVC rejects one stage's output inside another's."""
    outs = [
        (R.instance_id(s, a), p)
        for s in R.STAGES
        for a in R.instances(s, PARAMS)
        for p in R.stage_outputs(s, a, PARAMS).values()
    ]
    for i, (owner, path) in enumerate(outs):
        for other, other_path in outs[i + 1 :]:
            assert not (path == other_path or other_path.startswith(path + "/") or path.startswith(other_path + "/")), (
                f"{owner}:{path} overlaps {other}:{other_path}"
            )


def test_same_command_for_both_schedulers() -> None:
    st = R.stage("train")
    assert (
        st.command({"benchmark": "{wildcards.benchmark}", "budget": "{wildcards.budget}"}).format(
            wildcards=type("W", (), {"benchmark": "demo", "budget": "4000"})
        )
        == st.command({"benchmark": "demo", "budget": "4000"})
        == "python -m smt train --benchmark demo --budget 4000"
    )
    for line in (ROOT / "dvc.yaml").read_text().splitlines():
        if "python -m smt train" in line:
            assert line.strip() == "cmd: python -m smt train --benchmark ${item.benchmark} --budget ${item.budget}"


def test_every_stage_has_one_rule_with_log_and_benchmark_where_heavy() -> None:
    rules = "".join(p.read_text() for p in sorted((ROOT / "rules").glob("*.smk")))
    for st in R.STAGES:
        assert rules.count(f"rule {st.name}:") == 1, f"stage {st.name} needs exactly one rule in rules/*.smk"
        assert f'W.log("{st.name}")' in rules and f'W.command("{st.name}")' in rules
        assert (f'W.benchmark("{st.name}")' in rules) == st.heavy, f"{st.name}: benchmark directive vs heavy flag"


def test_a_benchmarks_options_are_read_by_its_own_ingest_only() -> None:
    params = copy.deepcopy(PARAMS)
    params["benchmarks"]["quality"] = {"source": "q", "format": "leval", "split": "all", "include_leval_added": False}
    P.validate(params)
    # the report reads the benchmarks mapping (which benchmarks exist), and is downstream of every ingest anyway
    assert R.readers_of_key(params, "benchmarks.quality.split") == {"ingest@quality", "report"}
    assert R.readers_of_key(params, "benchmarks.demo") == {"ingest@demo", "report"}
    assert R.downstream(params, R.readers_of_key(params, "benchmarks.quality.split")) == R.downstream(
        params, {"ingest@quality"}
    )
    assert R.readers_of_file(params, "smt/benchmarks/loaders/quality.py") == {"ingest@quality"}


def test_budgets_fan_out_a_matrix_of_mix_train_and_smt_scores() -> None:
    params = copy.deepcopy(PARAMS)
    params["mix"]["token_budgets"] = [1000, 2000]
    ids = {R.instance_id(st, ax) for st in R.STAGES for ax in R.instances(st, params)}
    for stage in ("mix", "train", "eval_smt_closed_book", "eval_smt_rag"):
        assert {f"{stage}@demo-1000", f"{stage}@demo-2000"} <= ids
    assert "eval_rag_base@demo" in ids and not any(i.startswith("eval_rag_base@demo-") for i in ids)
    assert R.downstream(params, {"mix@demo-2000"}) == {
        "mix@demo-2000", "train@demo-2000", "eval_smt_closed_book@demo-2000", "eval_smt_rag@demo-2000",
        "scaling@demo", "report",
    }  # fmt: skip
