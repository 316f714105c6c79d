"""The stage table is the single source: its keys, files and graph, and dvc.yaml and rules/*.smk rendered from it."""

from __future__ import annotations

import copy
import importlib.util
from pathlib import Path

import pytest

from smt.pipeline import dvc_yaml, smk
from smt.pipeline import graph as G
from smt.pipeline import params as P
from smt.pipeline import stage as ST
from smt.pipeline import stages as S

ROOT = Path(__file__).resolve().parents[2]
PARAMS = P.load(ROOT / "params.yaml")


def test_committed_dvc_yaml_matches_the_stage_table() -> None:
    assert (ROOT / "dvc.yaml").read_text() == dvc_yaml.render(PARAMS), (
        "dvc.yaml drifted from smt/pipeline/stages.py: run `python -m smt render-dvc` and commit the result"
    )


@pytest.mark.parametrize("topic", smk.TOPICS)
def test_committed_rules_match_the_stage_table(topic: str) -> None:
    assert (ROOT / "rules" / f"{topic}.smk").read_text() == smk.render(topic), (
        f"rules/{topic}.smk drifted from smt/pipeline/stages.py: run `python -m smt render-rules` and commit it"
    )


@pytest.mark.parametrize("stage", S.STAGES, ids=lambda s: s.name)
def test_stage_declarations_point_at_real_things(stage: ST.Stage) -> None:
    for axes in G.instances(stage, PARAMS):
        for key in stage.keys(axes, PARAMS):
            P.get(PARAMS, key)  # raises when the key is not in params.yaml
        for path in G.stage_code(stage, axes):
            assert (ROOT / path).is_file(), f"{stage.name}: code dependency {path} does not exist"
    assert importlib.util.find_spec(stage.module_name), f"{stage.name}: no module {stage.module_name}"
    assert stage.outputs and stage.doc and stage.tests
    for test in stage.tests:
        assert (ROOT / test).is_file(), f"{stage.name}: {test} does not exist"


def test_every_params_key_is_read_by_some_stage() -> None:
    def leaves(node: dict, prefix: str = "") -> list[str]:
        out = []
        for k, v in node.items():
            out += leaves(v, f"{prefix}{k}.") if isinstance(v, dict) else [f"{prefix}{k}"]
        return out

    declared = {k for s in S.STAGES for axes in G.instances(s, PARAMS) for k in s.keys(axes, PARAMS)}
    declared |= set(ST.AXIS_VALUES_KEY.values())  # read as the stage instances themselves
    unused = [k for k in leaves(PARAMS) if not any(G.related_keys(k, d) for d in declared)]
    assert unused == [], f"params keys no stage declares (they could change nothing): {unused}"


RECIPES = ("smt", "smt_fr")
BUDGET = str(PARAMS["mix"]["token_budgets"][0])  # the default's one budget (instances mix_smt@demo-<budget>, ...)


def trained(*stages: str, budget: str = BUDGET) -> set[str]:
    """Instances of recipe-axis stages for every recipe of params.yaml (mix_smt@demo-<budget>, ...)."""
    return {f"{stage}_{recipe}@demo-{budget}" for stage in stages for recipe in RECIPES}


def test_downstream_closure_of_a_training_key() -> None:
    closure = G.downstream(PARAMS, G.readers_of_key(PARAMS, "train.learning_rate"))
    assert closure == trained("train", "eval_smt_closed_book", "eval_smt_rag") | {"scaling@demo", "report", "metrics"}


def test_a_recipe_reads_only_its_own_streams() -> None:
    ar = G.downstream(PARAMS, {"synth_docs@demo-active_reading"})
    assert f"mix_smt@demo-{BUDGET}" in ar and f"mix_smt_fr@demo-{BUDGET}" not in ar
    readers = G.readers_of_key(PARAMS, "recipes.smt_fr")
    assert readers == {f"mix_smt_fr@demo-{BUDGET}", "scaling@demo", "report", "metrics"}


def test_downstream_closure_of_a_generation_key() -> None:
    closure = G.downstream(PARAMS, G.readers_of_key(PARAMS, "synth_qa.temperature"))
    assert closure == {
        "synth_qa@demo",
        "synth_docs@demo-active_reading",
        "synth_docs@demo-focal_rewrite",
        "synth_contamination@demo",
        "synth_audit@demo",
        *trained("mix", "train", "eval_smt_closed_book", "eval_smt_rag"),
        "scaling@demo",
        "report",
        "metrics",
    }


def test_outputs_never_overlap() -> None:
    """DVC rejects one stage's output inside another's."""
    outs = [
        (ST.instance_id(s, a), p)
        for s in S.STAGES
        for a in G.instances(s, PARAMS)
        for p in G.stage_outputs(s, a, PARAMS).values()
    ]
    for i, (owner, path) in enumerate(outs):
        for other, other_path in outs[i + 1 :]:
            assert not (path == other_path or other_path.startswith(path + "/") or path.startswith(other_path + "/")), (
                f"{owner}:{path} overlaps {other}:{other_path}"
            )


def test_same_command_for_both_schedulers() -> None:
    st = S.stage("train")
    wildcards = {a: f"{{wildcards.{a}}}" for a in st.axes}
    values = {"benchmark": "demo", "recipe": "smt", "budget": "4000"}
    assert (
        st.command(wildcards).format(wildcards=type("W", (), values))
        == st.command(values)
        == "python -m smt train --benchmark demo --recipe smt --budget 4000"
    )
    commands = [line.strip() for line in (ROOT / "dvc.yaml").read_text().splitlines() if "python -m smt train" in line]
    assert commands == [
        f"cmd: python -m smt train --benchmark ${{item.benchmark}} --recipe {r} --budget ${{item.budget}}"
        for r in RECIPES
    ]


def test_every_stage_has_one_rule_with_log_and_benchmark_where_heavy() -> None:
    rules = {p.stem: p.read_text() for p in sorted((ROOT / "rules").glob("*.smk"))}
    for st in S.STAGES:
        holding = [name for name, text in rules.items() if f"\nrule {st.name}:\n" in text]
        assert len(holding) == 1, f"stage {st.name} needs exactly one rule in rules/*.smk, found in {holding}"
        rule = rules[holding[0]].split(f"\nrule {st.name}:\n")[1].split("\n\n\nrule ")[0]
        assert "    log:\n" in rule and f"python -m smt {st.name}" in rule
        assert ("    benchmark:\n" in rule) == st.heavy, f"{st.name}: benchmark directive vs heavy flag"


def test_a_benchmarks_options_are_read_by_its_own_ingest_only() -> None:
    params = copy.deepcopy(PARAMS)
    params["benchmarks"]["quality"] = {"source": "q", "format": "leval", "split": "all", "include_leval_added": False}
    P.validate(params)
    # the report and the metrics read the benchmarks mapping (which benchmarks exist), and are downstream of every
    # ingest anyway
    assert G.readers_of_key(params, "benchmarks.quality.split") == {"ingest@quality", "report", "metrics"}
    assert G.readers_of_key(params, "benchmarks.demo") == {"ingest@demo", "report", "metrics"}
    assert G.downstream(params, G.readers_of_key(params, "benchmarks.quality.split")) == G.downstream(
        params, {"ingest@quality"}
    )
    assert G.readers_of_file(params, "smt/benchmarks/loaders/quality.py") == {"ingest@quality"}


def test_recipes_and_budgets_fan_out_mix_train_and_smt_scores() -> None:
    params = copy.deepcopy(PARAMS)
    params["mix"]["token_budgets"] = [1000, 2000]
    ids = {ST.instance_id(st, ax) for st in S.STAGES for ax in G.instances(st, params)}
    for stage in ("mix", "train", "eval_smt_closed_book", "eval_smt_rag"):
        assert trained(stage, budget="1000") | trained(stage, budget="2000") <= ids
    assert "eval_rag_base@demo" in ids and not any(i.startswith("eval_rag_base@demo-") for i in ids)
    assert G.downstream(params, {"mix_smt@demo-2000"}) == {
        "mix_smt@demo-2000", "train_smt@demo-2000", "eval_smt_closed_book_smt@demo-2000",
        "eval_smt_rag_smt@demo-2000", "scaling@demo", "report", "metrics",
    }  # fmt: skip


def test_a_raised_budget_raises_the_stream_targets_and_reruns_generation() -> None:
    params = copy.deepcopy(PARAMS)
    budget = int(BUDGET)
    params["mix"]["token_budgets"] = [budget, budget // 2]  # a smaller budget: every stream already holds enough
    assert not any(i.startswith("synth_") for i in G.changed_instances(PARAMS, params))
    params["mix"]["token_budgets"] = [budget, budget * 2]
    changed = G.changed_instances(PARAMS, params)
    assert {"synth_qa@demo", "synth_docs@demo-active_reading", "synth_docs@demo-focal_rewrite"} <= changed
    params = copy.deepcopy(PARAMS)
    params["recipes"]["qa_heavy"] = {"qa": 0.8, "active_reading": 0.2}  # raises qa's target only
    changed = G.changed_instances(PARAMS, params)
    assert "synth_qa@demo" in changed and "synth_docs@demo-active_reading" not in changed
    assert trained("mix", "train") - changed == trained("mix", "train"), "the old recipes' models stay"
