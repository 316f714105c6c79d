"""The whole graph on the embedded default, timed as a user runs it: `snakemake --cores N` on a scratch copy of the
project with no results (a fresh clone, the environment already set up), against the five-minute target on two
cores. Prints every job's start and end from Snakemake's log, the chain of jobs that set the wall time (back from
the last job, each step what a job waited on: the input that was made last, or, where its inputs were ready before
it started, the job whose end freed a core for it), and the generated tokens/s of each generation stage; writes it
all with the machine to bench/results/pipeline.json.

    python bench/pipeline.py [--cores 2] [--keep /tmp/run] [--out bench/results/pipeline.json]

Nothing else should run on the machine meanwhile: two processes on the same cores slow each other down.
"""

from __future__ import annotations

import argparse
import datetime
import json
import re
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import results_file
from project_copy import copy_project

ROOT = Path(__file__).resolve().parents[1]
TARGET_SECONDS = 300.0  # five minutes on two cores
STAMP = re.compile(r"^\[(\w{3} \w{3} +\d+ [\d:]+ \d{4})\]$")
RULE = re.compile(r"^(?:local)?rule (\w+):$")
JOBID = re.compile(r"^\s+jobid: (\d+)$")
WILDCARDS = re.compile(r"^\s+wildcards: (.*)$")
FILES = re.compile(r"^\s+(input|output): (.*)$")
FINISHED = re.compile(r"^Finished jobid: (\d+)")


def jobs(log: str) -> list[dict[str, Any]]:
    """Every job of a Snakemake log: rule, wildcards, start and end in seconds from the first timestamp."""
    now = first = None
    pending: dict[str, Any] | None = None
    started: dict[str, dict[str, Any]] = {}
    done = []
    for line in log.splitlines():
        if m := STAMP.match(line):
            now = datetime.datetime.strptime(m.group(1), "%a %b %d %H:%M:%S %Y")
            first = first or now
        elif m := RULE.match(line):
            pending = {"rule": m.group(1), "wildcards": "", "start": (now - first).total_seconds(), "input": [],
                       "output": []}  # fmt: skip
        elif pending is not None and (m := JOBID.match(line)):
            started[m.group(1)] = pending
        elif pending is not None and (m := WILDCARDS.match(line)):
            pending["wildcards"] = m.group(1)
        elif pending is not None and (m := FILES.match(line)):
            pending[m.group(1)] = m.group(2).split(", ")
        elif (m := FINISHED.match(line)) and m.group(1) in started:
            job = started.pop(m.group(1))
            done.append({**job, "end": (now - first).total_seconds()})
    return sorted(done, key=lambda j: (j["start"], j["end"]))


def critical_chain(done: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Back from the last job to finish, each step what the job waited on: the job that made its last input, when
    that ended as it started (to the log's one-second resolution), else the job, started earlier, whose end freed a
    core for it. Each job of the chain says which (`waited_on`: input | core | nothing)."""
    chain = [{**max(done, key=lambda j: (j["end"], j["start"])), "waited_on": "nothing"}]
    while chain[-1]["start"] > 0:
        job, now = chain[-1], chain[-1]["start"]
        makers = [j for j in done if set(j["output"]) & set(job["input"])]
        last_input = max(makers, key=lambda j: j["end"], default=None)
        if last_input is not None and last_input["end"] >= now - 1:
            chain[-1]["waited_on"], step = "input", last_input
        else:
            freed = [j for j in done if j["start"] < now and now - 1 <= j["end"] <= now + 1]
            if not freed:
                break
            chain[-1]["waited_on"], step = "core", max(freed, key=lambda j: j["end"] - j["start"])
        chain.append({**step, "waited_on": "nothing"})
    return chain[::-1]


def generation(run: Path) -> dict[str, Any]:
    """Generated tokens, seconds, rounds and requests of each generation stage's manifest."""
    found = {}
    for path in sorted((run / "results/synth").rglob("*.manifest.json")):
        if "shards" in path.parts:
            continue
        manifest = json.loads(path.read_text())
        found[path.name.removesuffix(".manifest.json")] = {
            "generated_tokens": manifest["generation"]["completion_tokens"],
            "tokens_per_s": manifest["generation"]["completion_tokens_per_s"],
            "requests": manifest["counts"]["requests"],
            "rounds": manifest["counts"]["rounds"],
        }
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--cores", type=int, default=2)
    parser.add_argument("--keep", type=Path, help="run in this folder and keep it (default: a temporary one)")
    parser.add_argument("--out", type=Path, default=ROOT / "bench/results/pipeline.json")
    args = parser.parse_args()
    run = args.keep or Path(tempfile.mkdtemp(prefix="smt-pipeline-"))
    if run.exists() and any(run.iterdir()):
        raise SystemExit(f"--keep {run} is not empty: the run must start from a project with no results")
    run.mkdir(parents=True, exist_ok=True)
    copy_project(run)
    started = time.perf_counter()
    proc = subprocess.run(["snakemake", "--cores", str(args.cores)], cwd=run, capture_output=True, text=True)
    wall = time.perf_counter() - started
    if proc.returncode:
        raise SystemExit(f"snakemake failed ({proc.returncode}) in {run}:\n{proc.stderr[-3000:]}")
    done = jobs(next((run / ".snakemake/log").glob("*.snakemake.log")).read_text())
    if not done:
        raise SystemExit(f"no jobs in {run}/.snakemake/log (is `quiet` set in a profile?)")
    chain = critical_chain(done)
    waited = {(j["rule"], j["wildcards"], j["start"]): j["waited_on"] for j in chain}
    print(f"{'start':>6} {'end':>6} {'s':>5}  {'chain':<7} job")
    for j in done:
        mark = waited.get((j["rule"], j["wildcards"], j["start"]), "")
        print(f"{j['start']:6.0f} {j['end']:6.0f} {j['end'] - j['start']:5.0f}  {mark:<7} {j['rule']} {j['wildcards']}")
    gen = generation(run)
    for name, g in gen.items():
        print(f"{name}: {g['generated_tokens']} tokens in {g['rounds']} rounds, {g['tokens_per_s']:.1f} tokens/s")
    print(f"whole graph: {wall:.0f} s on {args.cores} cores ({wall / TARGET_SECONDS:.2f}x the {TARGET_SECONDS:.0f} s "
          f"target); chain: the jobs that set it, each marked with what it waited on (input or a core)")  # fmt: skip
    brief = ("rule", "wildcards", "start", "end")
    results_file.write(
        args.out,
        {
            "cores": args.cores,
            "wall_seconds": round(wall, 1),
            "target_seconds": TARGET_SECONDS,
            "ratio_to_target": round(wall / TARGET_SECONDS, 3),
            "jobs": [{k: j[k] for k in brief} for j in done],
            "critical_chain": [{k: j[k] for k in (*brief, "waited_on")} for j in chain],
            "generation": gen,
        },
    )
    if not args.keep:
        shutil.rmtree(run, ignore_errors=True)


if __name__ == "__main__":
    main()
