"""bench/pipeline.py: job times and the chain that set the wall time, read from a real Snakemake log."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from helpers import ROOT

sys.path.insert(0, str(ROOT / "bench"))

import pipeline

# slow -> after_slow is the long chain; quick runs beside slow; join waits on both.
SNAKEFILE = """
rule join:
    input: "after_slow.txt", "quick.txt"
    output: "join.txt"
    shell: "cat {input} > {output}"

rule after_slow:
    input: "slow.txt"
    output: "after_slow.txt"
    shell: "sleep 2 && cp {input} {output}"

rule slow:
    output: "slow.txt"
    shell: "sleep 3 && echo slow > {output}"

rule quick:
    output: "quick.txt"
    shell: "echo quick > {output}"
"""


def test_jobs_and_the_chain_that_set_the_wall_time(tmp_path: Path) -> None:
    (tmp_path / "Snakefile").write_text(SNAKEFILE)
    subprocess.run(["snakemake", "--cores", "2"], cwd=tmp_path, check=True, capture_output=True)
    log = next((tmp_path / ".snakemake/log").glob("*.snakemake.log")).read_text()
    done = pipeline.jobs(log)
    by_rule = {j["rule"]: j for j in done}
    assert sorted(by_rule) == ["after_slow", "join", "quick", "slow"]
    assert by_rule["slow"]["start"] == 0 and by_rule["slow"]["end"] >= 3
    assert by_rule["after_slow"]["start"] >= by_rule["slow"]["end"] and by_rule["join"]["end"] >= 5
    chain = pipeline.critical_chain(done)
    assert [(j["rule"], j["waited_on"]) for j in chain] == [
        ("slow", "nothing"), ("after_slow", "input"), ("join", "input")
    ]  # fmt: skip


def test_a_job_that_waited_for_a_core_is_marked_so(tmp_path: Path) -> None:
    (tmp_path / "Snakefile").write_text(
        'rule join:\n    input: "x.txt", "y.txt"\n    output: "join.txt"\n    shell: "cat {input} > {output}"\n\n'
        'rule one:\n    output: "{name}.txt"\n    shell: "sleep 2 && echo {wildcards.name} > {output}"\n'
    )
    subprocess.run(["snakemake", "--cores", "1"], cwd=tmp_path, check=True, capture_output=True)
    done = pipeline.jobs(next((tmp_path / ".snakemake/log").glob("*.snakemake.log")).read_text())
    chain = pipeline.critical_chain(done)
    assert [(j["rule"], j["waited_on"]) for j in chain] == [("one", "nothing"), ("one", "core"), ("join", "input")]
    assert chain[0]["wildcards"] != chain[1]["wildcards"]
