"""Build-system overhead on a paper-sized graph: how long Snakemake and DVC take to decide what to run.

The graph: 3 benchmarks x 5 token budgets x 2 document generators (params.yaml's) x 64 shards; `--set` changes
it. A copy of the project gets placeholder outputs for every job (no model runs), marked up to date for
Snakemake (--touch) and recorded for DVC (dvc commit), then the script times:

- `snakemake -n` with everything to do (the DAG alone), and as a no-op after the placeholders;
- `dvc status` as a no-op;
- deciding what a one-key params change rebuilds: `python -m smt affected`, `snakemake -n`, `dvc status`.

Each figure is printed with its ratio to the no-op `snakemake -n` of the same run.

    python bench/build_overhead.py [--set generation.shards=8 mix.token_budgets='[1000, 2000]' ...]
"""

from __future__ import annotations

import argparse
import csv
import io
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import results_file
import yaml
from project_copy import copy_project

from smt.pipeline import graph as G
from smt.pipeline import params as P
from smt.pipeline import stages as S

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"
GRAPH = {
    "benchmarks": {
        "demo": {"source": "smt/benchmarks/demo"},
        "quality": {
            "source": str(SHARED / "quality"),
            "format": "leval",
            "split": "all",
            "include_leval_added": False,
        },
        "longhealth": {"source": "tests/fixtures/longhealth"},
    },
    "mix": {"token_budgets": [1000, 4000, 16000, 64000, 256000]},
    "generation": {"shards": 64},
}
CHANGED_KEY = ("train.learning_rate", 2e-4)


def run(cmd: str, cwd: Path) -> tuple[float, str]:
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    started = time.perf_counter()
    proc = subprocess.run(cmd, cwd=cwd, shell=True, text=True, capture_output=True, env=env)
    seconds = time.perf_counter() - started
    if proc.returncode != 0:
        raise RuntimeError(f"{cmd} failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-4000:]}")
    return seconds, proc.stdout


def set_key(params: dict[str, Any], dotted: str, value: Any) -> None:
    *parents, last = dotted.split(".")
    node = params
    for part in parents:
        node = node.setdefault(part, {})
    node[last] = value


def workspace(dest: Path, changes: list[tuple[str, Any]]) -> Path:
    copy_project(dest)
    params = yaml.safe_load((dest / "params.yaml").read_text())
    for key, value in GRAPH.items():  # the benchmarks replace params.yaml's; other sections are updated
        params[key] = value if key == "benchmarks" else {**params[key], **value}
    for key, value in changes:
        set_key(params, key, value)
    (dest / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    run("git init -q && git add -A && git -c user.name=b -c user.email=b@b commit -qm bench", dest)
    return dest


def placeholder_outputs(ws: Path) -> int:
    """Create every job's outputs (from `snakemake --summary`) as small files, then mark them up to date."""
    _, summary = run("snakemake --summary --cores 1 --quiet", ws)
    rows = list(csv.DictReader(io.StringIO(summary[summary.index("output_file") :]), delimiter="\t"))
    params = P.load(ws / "params.yaml")
    directories = {
        path
        for st in S.STAGES
        for axes in G.instances(st, params)
        for key, path in G.stage_outputs(st, axes, params).items()
        if st.outputs[key].directory
    }
    for row in rows:
        path = ws / row["output_file"]
        if row["output_file"] in directories or row.get("rule") == "download":
            path.mkdir(parents=True, exist_ok=True)
            (path / "placeholder").write_text("x\n")
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text("{}\n")
    run("snakemake --touch --cores 1 --quiet", ws)
    run("dvc commit --force --quiet", ws)
    return len(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--set", nargs="*", default=[], help="extra params as dotted.key=YAML value")
    parser.add_argument("--out", default=str(ROOT / "bench/results/build_overhead.json"))
    args = parser.parse_args()
    changes = [(k, yaml.safe_load(v)) for k, v in (item.split("=", 1) for item in args.set)]
    with tempfile.TemporaryDirectory() as tmp:
        ws = workspace(Path(tmp), changes)
        figures: dict[str, float] = {}
        figures["snakemake -n (everything to do)"], _ = run("snakemake -n --cores 2 --quiet", ws)
        jobs = placeholder_outputs(ws)
        figures["snakemake -n (no-op)"], _ = run("snakemake -n --cores 2", ws)
        figures["dvc status (no-op)"], _ = run("dvc status", ws)
        key, value = CHANGED_KEY
        params = yaml.safe_load((ws / "params.yaml").read_text())
        set_key(params, key, value)
        (ws / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
        figures[f"smt affected {key}"], affected = run(f"python -m smt affected {key}", ws)
        figures[f"snakemake -n after {key}"], _ = run("snakemake -n --cores 2", ws)
        figures[f"dvc status after {key}"], _ = run("dvc status", ws)
    baseline = figures["snakemake -n (no-op)"]
    print(f"graph: {jobs} outputs; changing {key} rebuilds {len(affected.split())} stage instances")
    for name, seconds in figures.items():
        print(f"{name:>45}: {seconds:7.2f} s  ({seconds / baseline:5.2f}x the no-op snakemake -n)")
    result = {
        "graph": {**GRAPH, "extra": dict(changes)},
        "outputs": jobs,
        "affected_instances": len(affected.split()),
        "seconds": figures,
    }
    results_file.write(args.out, result)


if __name__ == "__main__":
    main()
