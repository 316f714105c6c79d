"""Comparing runs through DVC on the recorded small build: the metrics `dvc exp show` lists, a sweep of two queued
experiments, the README's table view in a 160-column terminal, `smt compare`, `dvc plots diff`, `smt record --save`
against `dvc exp run`, and `dvc exp apply` followed by `smt sync`.

The sweep changes `audit.max_items_per_generator`, which only the synthetic-data audit and the metrics stage read,
so each experiment reruns two cheap stages; everything else comes from DVC's cache.
"""

from __future__ import annotations

import csv
import io
import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from helpers import dvc_status, sh, snakemake_pending

from smt.pipeline import compare

pytestmark = pytest.mark.pipeline
KEY = "audit.max_items_per_generator"
SWEEP = "sweep"  # DVC names the two experiments sweep-1 and sweep-2
MODELS = ("base", "smt", "smt_fr")  # the small configuration's recipes
ACCURACIES = [f"demo.{m}.{c}" for m in MODELS for c in ("cb", "rag")]
# The README's view of a sweep (section "Comparing runs"), for the embedded default's benchmark
VIEW = (
    "dvc exp show --no-pager --only-changed --keep '.*\\.(cb|rag)$' "
    "--drop 'demo\\.|compute\\.|.*/|Created|State|Executor' "
    "--sort-by demo.smt_fr.cb --sort-order desc"
)


def shown(ws: Path) -> list[dict[str, Any]]:
    return json.loads(sh("dvc exp show --json", ws).stdout)


def experiment(ws: Path, name: str) -> dict[str, Any]:
    for baseline in shown(ws):
        for exp in baseline.get("experiments") or []:
            for rev in exp["revs"]:
                if rev.get("name") == name:
                    return rev["data"]
    raise AssertionError(f"no experiment {name} in dvc exp show")


def table(ws: Path, flags: str = "") -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(sh(f"dvc exp show --csv {flags}", ws).stdout)))


@pytest.fixture(scope="module")
def swept(recorded: Path) -> Path:
    """The recorded build committed as the baseline, then two experiments queued with DVC's sweep syntax and run
    by its queue."""
    sh("git add -A && git -c user.name=t -c user.email=t@t commit -qm 'recorded baseline' --allow-empty", recorded)
    sh(f"dvc exp run --queue -S '{KEY}=2,3' --name {SWEEP}", recorded)
    sh("dvc exp run --run-all", recorded, timeout=1200)
    return recorded


def test_metrics_are_one_small_file_with_short_unique_names(recorded: Path) -> None:
    workspace = next(e for e in shown(recorded) if e["rev"] == "workspace")["data"]
    assert list(workspace["metrics"]) == ["results/metrics.json"]
    names = compare.flatten(workspace["metrics"]["results/metrics.json"]["data"])
    assert len(names) <= 45, sorted(names)
    for name in ACCURACIES:
        assert {name, f"{name}_lo", f"{name}_hi"} <= set(names) and 0 <= names[name] <= 1
    assert not [n for n in names if re.search(r"provenance|version|fingerprint|/", n)]
    header = next(csv.reader(io.StringIO(sh("dvc exp show --csv", recorded).stdout)))
    assert set(names) <= set(header), "a metric name DVC had to prefix with its file is not unique"
    params = compare.flatten(workspace["params"]["params.yaml"]["data"])
    deps = [c for c in header if "/" in c]
    assert len(header) == 5 + len(names) + len(params) + len(deps), header  # Experiment, rev, typ, Created, parent


def test_a_queued_sweep_gives_one_row_per_experiment_with_its_param_and_scores(swept: Path) -> None:
    rows = [r for r in table(swept, f"--sort-by {KEY} --sort-order desc") if r["Experiment"].startswith(SWEEP)]
    assert [(r["Experiment"], r[KEY]) for r in rows] == [(f"{SWEEP}-2", "3"), (f"{SWEEP}-1", "2")]
    for row in rows:
        assert all(0 <= float(row[name]) <= 1 for name in ACCURACIES), row
    # each ran its own audit: the sampled items (and so the Vendi scores) differ from the baseline's
    assert experiment(swept, f"{SWEEP}-1")["params"]["params.yaml"]["data"]["audit"]["max_items_per_generator"] == 2


def test_the_readme_view_shows_every_accuracy_in_160_columns(swept: Path) -> None:
    out = sh(f"COLUMNS=160 {VIEW}", swept).stdout
    assert max(len(line) for line in out.splitlines()) <= 160 and "…" not in out, out  # nothing cut or collapsed
    for name in [*ACCURACIES, KEY, f"{SWEEP}-1", f"{SWEEP}-2"]:
        assert name in out, name
    rows = [line for line in out.splitlines() if f"[{SWEEP}-" in line]
    assert len(rows) == 2, out


def test_smt_compare_tabulates_conditions_by_experiment_with_the_params_that_differ(swept: Path) -> None:
    out = sh(f"python -m smt compare {SWEEP}-1 {SWEEP}-2", swept).stdout
    lines = out.splitlines()
    assert lines[0] == f"| accuracy % [95% interval] | {SWEEP}-1 | {SWEEP}-2 |"
    for model in MODELS:
        for condition in ("closed-book", "RAG"):
            row = next(line for line in lines if line.startswith(f"| demo: {model}, {condition} |"))
            assert len(re.findall(r"\d+\.\d \[\d+\.\d, \d+\.\d\]", row)) == 2, row
    assert f"| `{KEY}` | 2 | 3 |" in lines
    assert not [line for line in lines if "learning_rate" in line]  # params that are the same are left out
    bad = sh("python -m smt compare no-such-exp", swept, check=False)
    assert bad.returncode == 2 and "no experiment 'no-such-exp'" in bad.stderr


def test_dvc_plots_diff_draws_both_experiments_on_each_chart(swept: Path, tmp_path: Path) -> None:
    plots = json.loads(sh(f"dvc plots diff {SWEEP}-1 {SWEEP}-2 --json", swept).stdout)["data"]
    names = {f"{SWEEP}-1", f"{SWEEP}-2"}
    for name, x_title in (("training_loss", "optimizer step"), ("accuracy_vs_synthetic_tokens", "unique synthetic")):
        (plot,) = plots[name]
        spec = plot["content"]
        assert set(plot["revisions"]) == names and {row["rev"] for row in spec["data"]["values"]} == names
        y = spec["encoding"].get("y") or spec["layer"][0]["encoding"]["y"]  # DVC's linear template layers its y
        assert spec["encoding"]["x"]["title"].startswith(x_title) and y["title"] and spec["title"], spec
    assert plots["accuracy_vs_synthetic_tokens"][0]["content"]["encoding"]["x"]["scale"] == {"type": "log"}
    sh(f"dvc plots diff {SWEEP}-1 {SWEEP}-2 -o {tmp_path / 'plots'}", swept)
    assert (tmp_path / "plots" / "index.html").is_file()


def test_record_save_and_dvc_exp_run_give_the_same_row_for_the_same_results(swept: Path) -> None:
    sh("python -m smt record --save recorded-run", swept)
    sh("dvc exp run --name dvc-run", swept)
    saved, ran = experiment(swept, "recorded-run"), experiment(swept, "dvc-run")
    for part in ("params", "metrics", "deps", "outs"):
        assert saved[part] == ran[part], part


def test_exp_apply_then_sync_leaves_both_tools_with_nothing_to_do(swept: Path) -> None:
    sh(f"dvc exp apply {SWEEP}-1", swept)
    assert yaml.safe_load((swept / "params.yaml").read_text())["audit"]["max_items_per_generator"] == 2
    sh("python -m smt sync", swept)
    assert snakemake_pending(swept) == set() and dvc_status(swept) == set()
    metrics = json.loads((swept / "results/metrics.json").read_text())
    assert compare.flatten(metrics) == compare.flatten(
        experiment(swept, f"{SWEEP}-1")["metrics"]["results/metrics.json"]["data"]
    )
    # back to the recorded baseline for the tests that follow
    sh("git checkout HEAD -- params.yaml dvc.lock && dvc checkout --force && python -m smt sync", swept)
    assert snakemake_pending(swept) == set() and dvc_status(swept) == set()


def test_smt_queue_renders_dvc_yaml_for_an_axis_value_and_refuses_an_unknown_key(recorded: Path) -> None:
    bad = sh("python -m smt queue -S mix.token_budget=20000", recorded, check=False)
    assert bad.returncode == 2 and "no key 'mix.token_budget' (did you mean mix.token_budgets?)" in bad.stderr
    invalid = sh("python -m smt queue -S 'rag.top_k=2,64'", recorded, check=False)  # 64 > rag.top_k_retrieve
    assert invalid.returncode == 2 and "rag.top_k=64" in invalid.stderr and "Queued" not in invalid.stderr
    before = (recorded / "dvc.yaml").read_text(), (recorded / "params.yaml").read_text()
    sh("python -m smt queue -S 'mix.token_budgets=[600, 1200]' --name budgets", recorded)
    assert ((recorded / "dvc.yaml").read_text(), (recorded / "params.yaml").read_text()) == before
    queued = [line for line in sh("dvc queue status", recorded).stdout.splitlines() if " budgets " in line]
    assert len(queued) == 1 and "Queued" in queued[0], queued
    stash = "refs/exps/celery/stash"  # the queued experiment: the workspace as DVC will run it
    assert yaml.safe_load(sh(f"git show {stash}:params.yaml", recorded).stdout)["mix"]["token_budgets"] == [600, 1200]
    assert "results/mix/demo/smt/1200/mix_report.json" in sh(f"git show {stash}:dvc.yaml", recorded).stdout
    sh("dvc queue remove budgets", recorded)
    assert " budgets " not in sh("dvc queue status", recorded).stdout
