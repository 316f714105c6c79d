"""Selective rebuild: every params key, every shared module and every removal, in both tools.

On the recorded small build (conftest.py): for each leaf key of params.yaml that has another schema-valid
value, the instances whose params stamp changes are the registry's readers of the key and `dvc status` names
exactly them (fast, in-process); then `snakemake -n` and `dvc repro --dry --force-downstream` both plan exactly
the closure that `smt affected key=value` prints. Removing a generator or a token budget, and editing a core
module, are checked against hand-written expectations, the independent truth the registry cannot bend.
"""

from __future__ import annotations

import contextlib
import copy
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from helpers import SMALL, dvc_pending, dvc_status, env, sh, snakemake_pending, snakemake_planned

from smt.pipeline import codedeps, derived, dvc_yaml, stamps, tools
from smt.pipeline import graph as G
from smt.pipeline import params as P
from smt.pipeline import stage as ST
from smt.pipeline import stages as S

pytestmark = pytest.mark.pipeline
BUDGET = SMALL["mix"]["token_budgets"][0]
# Keys whose alternative must be a real folder for a build to accept it (the stages would read it).
FOLDER_KEYS = (
    "benchmarks.demo.source",
    "models.smollm2.path",
    "rag.reranker_model",
    "rag.embedding_model",  # a packaged embedder or any sentence-transformers folder
)
# Keys with no alternative a build can use here (no second GGUF package ships): a build must stop on them
# with a clear message naming the value, before any job runs.
NO_RUNTIME_ALTERNATIVE = ("models.smollm2.package", "models.smollm2.gguf_file")
RECIPES = tuple(SMALL["recipes"])
SWEEP = {"scaling@demo", "report", "metrics"}  # what reads every budget's results


def trained(*stages: str, budget: int = BUDGET) -> set[str]:
    """Instances of recipe-axis stages for every recipe (mix_smt@demo-600, ...)."""
    return {f"{stage}_{recipe}@demo-{budget}" for stage in stages for recipe in RECIPES}


def leaves(node: dict[str, Any], prefix: str = "") -> Iterator[tuple[str, Any]]:
    for key, value in node.items():
        if isinstance(value, dict) and value:
            yield from leaves(value, f"{prefix}{key}.")
        else:
            yield f"{prefix}{key}", value


def candidates(spec: dict[str, Any], value: Any) -> list[Any]:
    """Other values of a key, from its schema: another enum member, the other boolean, a neighbour number,
    one more list item, a longer string, a string for a null."""
    if "enum" in spec:
        return [e for e in spec["enum"] if e != value]
    if isinstance(value, bool):
        return [not value]
    kind = spec.get("type", [])
    if isinstance(value, int) and "integer" in (kind if isinstance(kind, list) else [kind]):
        return [value + 1, value - 1]
    if isinstance(value, int | float):
        return [round(value * 0.9, 6) if value else 0.1, round(value + 0.05, 6)]
    if isinstance(value, list):
        return [[*value, value[-1] + 1]] if value and isinstance(value[-1], int) else []
    if isinstance(value, str):
        return [value + "x"]
    return ["x"] if value is None else []


def key_schema(schema: dict[str, Any], key: str) -> dict[str, Any]:
    """The schema of a dotted key: named properties, a map's value schema (models.<name>), or {} for the inside
    of a free-form object (chat-template variables)."""
    spec = schema
    for part in key.split("."):
        if part in spec.get("properties", {}):
            spec = spec["properties"][part]
        elif isinstance(spec.get("additionalProperties"), dict):
            spec = spec["additionalProperties"]
        else:
            return {}
    return spec


def alternatives(params: dict[str, Any], folder: str) -> list[tuple[str, Any]]:
    """(key, another valid value) for every leaf key that has one; `folder` stands in for folder values."""
    schema = P.schema()
    found = []
    for key, value in leaves(params):
        spec = key_schema(schema, key)
        options = [folder] if key in FOLDER_KEYS else candidates(spec, value)
        for option in options:
            changed = copy.deepcopy(params)
            P.set_value(changed, key, option)
            try:
                P.validate(changed)
            except P.ParamsError:
                continue
            found.append((key, option))
            break
    return found


def write_params(ws: Path, params: dict[str, Any]) -> None:
    (ws / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))


def stamp_values(params: dict[str, Any]) -> dict[str, Any]:
    return {ST.instance_id(st, ax): stamps.values(st, ax, params) for st in S.STAGES for ax in G.instances(st, params)}


@pytest.fixture(scope="module")
def folder(recorded: Path) -> str:
    """A real folder inside the workspace for folder-valued keys (a copy of the demo benchmark's files)."""
    shutil.copytree(recorded / "smt/benchmarks/demo", recorded / "alt_folder")
    sh("git add alt_folder && git -c user.name=t -c user.email=t@t commit -qm 'a second folder'", recorded)
    return "alt_folder"


def test_every_key_changes_the_stamps_and_dvc_status_of_exactly_its_readers(recorded: Path, folder: str) -> None:
    from dvc.repo import Repo

    ws = recorded
    original = (ws / "params.yaml").read_text()
    params = P.load(ws / "params.yaml")
    keys = alternatives(params, folder)
    assert len(keys) >= 75, f"only {len(keys)} keys have an alternative"
    mismatches = []
    with contextlib.chdir(ws):
        before = stamp_values(params)
        try:
            for key, value in keys:
                if key in NO_RUNTIME_ALTERNATIVE:  # no build can use it (the next test checks the build refuses it)
                    continue
                changed = copy.deepcopy(params)
                P.set_value(changed, key, value)
                write_params(ws, changed)
                dvc_yaml.write(changed)
                derived.refresh(changed)  # what Snakemake's parse and DVC's `refresh` stage do first
                stamped = {i for i, v in stamp_values(changed).items() if before.get(i) != v}
                readers = G.readers_of_key(params, key) | G.changed_instances(params, changed)
                with Repo(str(ws)) as repo:
                    status = set(repo.status()) - {dvc_yaml.REFRESH_STAGE}
                if not stamped == status == readers:
                    mismatches.append(f"{key}={value!r}: stamps {stamped}, dvc status {status}, readers {readers}")
        finally:
            (ws / "params.yaml").write_text(original)
            dvc_yaml.write(params)
            derived.refresh(params)
    assert mismatches == []
    assert dvc_status(ws) == set()


def test_every_key_both_tools_plan_exactly_what_smt_affected_prints(recorded: Path, folder: str) -> None:
    """The full dry-run comparison: a changed value, `snakemake -n`, `dvc repro --dry --force-downstream`."""
    ws = recorded
    original = (ws / "params.yaml").read_text()
    params = P.load(ws / "params.yaml")
    mismatches = []
    try:
        for key, value in alternatives(params, folder):
            changed = copy.deepcopy(params)
            P.set_value(changed, key, value)
            write_params(ws, changed)
            if key in NO_RUNTIME_ALTERNATIVE:
                proc = sh("snakemake -n --cores 2", ws, check=False)
                assert proc.returncode != 0 and str(value) in proc.stdout + proc.stderr, key
                continue
            expected = G.downstream(changed, G.changed_instances(params, changed))
            with contextlib.chdir(ws):  # what Snakemake's parse does (dvc.yaml, model fingerprints), done first as
                tools.prepare(changed)  # DVC reads them meanwhile
            snakemake = subprocess.Popen(
                ["snakemake", "-n", "--cores", "2"],
                cwd=ws,
                env=env(),
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
            )
            planned = {"dvc": dvc_pending(ws)}
            out = snakemake.communicate(timeout=300)[0]
            planned["snakemake"] = snakemake_planned(out) if snakemake.returncode == 0 else {out[-2000:]}
            if any(found != expected for found in planned.values()):
                mismatches.append(f"{key}={value!r}: expected {sorted(expected)}, planned {planned}")
    finally:
        (ws / "params.yaml").write_text(original)
    assert mismatches == []
    assert snakemake_pending(ws) == set(), "values set back must leave nothing to do"
    assert dvc_status(ws) == set()


def test_smt_affected_answers_a_key_a_value_and_a_file(recorded: Path) -> None:
    def affected(*what: str) -> set[str]:
        return set(sh([sys.executable, "-m", "smt", "affected", *what], recorded).stdout.split())

    sweep = SWEEP
    assert affected("train.learning_rate") == trained("train", "eval_smt_closed_book", "eval_smt_rag") | sweep
    new = trained("mix", "train", "eval_smt_closed_book", "eval_smt_rag", budget=BUDGET // 2)
    assert affected(f"mix.token_budgets=[{BUDGET}, {BUDGET // 2}]") == new | sweep  # targets hold: no generation
    raised = affected(f"mix.token_budgets=[{BUDGET}, {2 * BUDGET}]")
    assert {"synth_qa@demo", "synth_docs@demo-active_reading", "synth_docs@demo-focal_rewrite"} <= raised
    assert affected("smt/train/mixing.py") == trained("mix", "train", "eval_smt_closed_book", "eval_smt_rag") | sweep
    assert affected("recipes.smt_fr") == G.downstream(P.load(recorded / "params.yaml"), {f"mix_smt_fr@demo-{BUDGET}"})


EVERYTHING = "every stage instance"
EDITS = [
    *((module, EVERYTHING) for module in codedeps.CORE),  # core: shapes every output
    ("smt/pipeline/stages.py", None),  # orchestration: reruns nothing by itself
    ("smt/benchmarks/demo/questions.jsonl", "ingest@demo"),  # a benchmark file: its ingest and what follows
]


@pytest.mark.parametrize(("path", "root"), EDITS, ids=[path for path, _ in EDITS])
def test_editing_a_file_reruns_exactly_its_readers_and_what_follows(
    recorded: Path, path: str, root: str | None
) -> None:
    ws = recorded
    params = P.load(ws / "params.yaml")
    everything = {ST.instance_id(st, ax) for st in S.STAGES for ax in G.instances(st, params)}
    expected = everything if root == EVERYTHING else G.downstream(params, {root}) if root else set()
    edited = ws / path
    original, stat = edited.read_bytes(), edited.stat()
    edited.write_bytes(original + (b"\n# edited\n" if path.endswith(".py") else b"\n"))
    try:
        assert snakemake_pending(ws) == expected
        assert dvc_pending(ws) == expected
    finally:
        edited.write_bytes(original)
        os.utime(edited, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert snakemake_pending(ws) == set()
    assert dvc_status(ws) == set()


def test_changed_content_behind_a_folder_valued_key_reruns_its_readers(recorded: Path, folder: str) -> None:
    """A reranker folder re-downloaded with new weights (same params) reruns retrieval and what follows."""
    ws = recorded
    original = (ws / "params.yaml").read_text()
    params = P.load(ws / "params.yaml")
    changed = copy.deepcopy(params)
    P.set_value(changed, "rag.reranker_model", folder)
    write_params(ws, changed)
    try:
        sh("snakemake --cores 2 --touch", ws)  # the folder named and recorded as built
        # `smt record` refuses touched outputs whose provenance names other params values; DVC's own commit does not
        sh("dvc commit --force", ws)
        assert snakemake_pending(ws) == set() and dvc_status(ws) == set()
        weights = ws / folder / "questions.jsonl"
        weights.write_text(weights.read_text() + "\n")
        expected = G.downstream(changed, {"retrieve@demo"})
        assert snakemake_pending(ws) == expected
        sh("python -m smt refresh", ws)  # what `dvc repro` runs first (stage refresh)
        assert dvc_pending(ws) == expected
    finally:
        (ws / "params.yaml").write_text(original)
        sh("git checkout -q alt_folder", ws)
    sh("snakemake --cores 2 --touch", ws)
    sh("python -m smt record", ws)
    assert snakemake_pending(ws) == set() and dvc_status(ws) == set()


def copy_workspace(src: Path, dest: Path) -> Path:
    """A copy of a recorded workspace (mtimes and Snakemake's metadata kept; DVC's cache hard-linked)."""
    shutil.copytree(src, dest, symlinks=True, ignore=shutil.ignore_patterns("cache"))
    shutil.copytree(src / ".dvc/cache", dest / ".dvc/cache", copy_function=os.link)
    return dest


def test_removing_a_generator_reruns_its_consumers_and_drops_it_from_the_report(recorded: Path, tmp_path: Path) -> None:
    ws = copy_workspace(recorded, tmp_path / "ws")
    params = yaml.safe_load((ws / "params.yaml").read_text())
    del params["synth_docs"]["generators"]["focal_rewrite"]
    del params["recipes"]["smt_fr"]  # the recipe that used it
    write_params(ws, params)
    sh("python -m smt render-dvc", ws)
    # written by hand: what reads the set of generators or recipes; the smt recipe's model stays as it is
    direct = {"synth_contamination@demo", "synth_audit@demo", "scaling@demo", "report", "metrics"}
    assert dvc_status(ws) == direct
    assert dvc_pending(ws) == direct
    assert snakemake_pending(ws) == direct
    sh("snakemake --cores 2", ws, timeout=900)
    sh("python -m smt record", ws)
    assert snakemake_pending(ws) == set() and dvc_status(ws) == set()
    report = (ws / "results/report.md").read_text()
    assert "smt_fr" not in report and "focal_rewrite" not in report and "| smt (" in report
    # the compute of the report counts the generation behind the streams that remain, and nothing else
    manifests = [
        ws / "results/synth/demo/qa.manifest.json",
        ws / "results/synth/demo/docs/active_reading.manifest.json",
    ]
    generated = sum(json.loads(m.read_text())["generation"]["completion_tokens"] for m in manifests)
    compute = json.loads((ws / "results/compute.json").read_text())
    assert compute["generated_tokens"] == generated and compute["training_runs"] == 1


def test_a_budget_added_then_removed_reruns_exactly_its_instances_then_the_sweep(
    recorded: Path, tmp_path: Path
) -> None:
    ws = copy_workspace(recorded, tmp_path / "ws")
    params = yaml.safe_load((ws / "params.yaml").read_text())
    small = BUDGET // 2  # below the targets the streams hold already: nothing to generate
    params["mix"]["token_budgets"] = [BUDGET, small]
    write_params(ws, params)
    new = trained("mix", "train", "eval_smt_closed_book", "eval_smt_rag", budget=small)
    assert snakemake_pending(ws) == new | SWEEP
    assert dvc_pending(ws) == new | SWEEP
    sh("snakemake --cores 2", ws, timeout=900)
    sh("python -m smt record", ws)
    points = (ws / "results/scaling/demo/points.csv").read_text()
    assert f",{BUDGET}," in points and f",{small}," in points, points
    params["mix"]["token_budgets"] = [BUDGET]
    write_params(ws, params)
    sh("python -m smt render-dvc", ws)
    assert dvc_status(ws) == SWEEP
    assert snakemake_pending(ws) == SWEEP
    sh("snakemake --cores 2", ws, timeout=600)
    points = (ws / "results/scaling/demo/points.csv").read_text()
    assert f",{BUDGET}," in points and f",{small}," not in points, points


def test_a_stage_run_by_dvc_from_a_stale_dvc_yaml_stops_and_says_so(recorded: Path, tmp_path: Path) -> None:
    ws = copy_workspace(recorded, tmp_path / "ws")
    params = yaml.safe_load((ws / "params.yaml").read_text())
    params["mix"]["token_budgets"] = [BUDGET, 3000]
    write_params(ws, params)  # dvc.yaml not re-rendered
    proc = subprocess.run(
        [sys.executable, "-m", "smt", "scaling", "--benchmark", "demo"],
        cwd=ws,
        env={**os.environ, "DVC_STAGE": "scaling@demo"},
        capture_output=True,
        text=True,
    )
    assert proc.returncode != 0 and "python -m smt render-dvc" in proc.stderr
