"""What the Snakefile and the rendered rules/*.smk call while Snakemake parses the workflow: params.yaml loaded
and checked, what derives from it brought up to date, and the inputs that depend on params (an axis the rule
does not have, a path named in params).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from smt import benchmarks
from smt.pipeline import graph as G
from smt.pipeline import params as P
from smt.pipeline import placement, tools
from smt.pipeline import stage as ST
from smt.pipeline import stages as S

AXIS_PATTERNS = ST.AXIS_PATTERNS
DOWNLOADABLE = benchmarks.DOWNLOADABLE  # the benchmarks with pinned files (smt/benchmarks/sources.yaml)


class ConfigMismatch(ValueError):
    """Snakemake's config differs from params.yaml (e.g. --config overrides, which the stages would not see)."""


def load_params(config: dict[str, Any], path: str = "params.yaml") -> dict[str, Any]:
    """Validate params.yaml, insist Snakemake's config is exactly it, and bring what derives from it up to date
    (params stamps, model fingerprints, dvc.yaml and rules/*.smk)."""
    params = P.load(path)
    if config and config != params:
        raise ConfigMismatch(
            "params.yaml is the only configuration: Snakemake --config/--configfile overrides are not seen by the "
            "stages. Edit params.yaml (or use `dvc exp run -S key=value`)."
        )
    tools.prepare(params)
    return params


def check_placement(params: dict[str, Any], workflow: Any) -> None:
    """Stop before any job runs when params.yaml cannot run on the GPUs the profile gives its rules (e.g. an
    effective batch that the training processes cannot split); print what would sit idle or fall back to the CPU."""
    counts = placement.workflow_gpus(workflow)
    for warning in placement.enforce(params, counts, "the profile (and any --set-resources)"):
        print(f"smt: warning: {warning}", file=sys.stderr)


def input(stage: str, name: str, params: dict[str, Any]) -> Any:
    """One input of a rule whose path depends on params: the rule's own axes stay wildcards, every other axis
    expands to the values params.yaml lists, and a params reference is resolved (one that depends on the rule's
    axis, `${benchmarks.{benchmark}.source}`, becomes an input function)."""
    st = S.stage(stage)
    template = st.inputs[name]
    if template in (ST.RECIPE_STREAMS, ST.RECIPE_MANIFESTS):
        return lambda wildcards: G.expand(template, dict(wildcards), params)
    if any("{" + a + "}" in ref for a in st.axes for ref in ST.PARAM_REFS.findall(template)):
        return lambda wildcards: source_files(G.expand(template, dict(wildcards), params))
    template = G.resolve_params_refs(template, params)
    paths = [template]
    for axis in dict.fromkeys(ST.AXIS_REF.findall(template)):
        if axis not in st.axes:
            paths = [p.replace("{" + axis + "}", v) for p in paths for v in G.axis_values(params, axis)]
    return paths if len(paths) > 1 or paths[0] != template else template


def source_files(paths: list[str]) -> list[str]:
    """A user's source folder as the files in it: Snakemake dates a folder input by the folder's own mtime,
    which an edit to a file inside does not change (DVC hashes the content). A folder that does not exist yet
    stays as it is, for a rule that makes it (data/raw/<benchmark> is downloaded)."""
    found: list[str] = []
    for path in paths:
        folder = Path(path)
        if folder.is_dir():
            found += sorted(str(f) for f in folder.rglob("*") if f.is_file() and not f.name.startswith("."))
        else:
            found.append(path)
    return found


def shard_files(stage: str, params: dict[str, Any]) -> list[str]:
    """Every shard's outputs, which the stage's own rule merges (`generation.shards` of them)."""
    count = P.get(params, ST.SHARDS_KEY)
    return [o.path.replace("{shard}", str(i)) for i in range(count) for o in S.stage(stage).shards.values()]


def fingerprint(stage: str, params: dict[str, Any]) -> Any:
    """The hash of the params values a job reads (a function of the wildcards for per-axis keys)."""
    st = S.stage(stage)
    if st.axes:
        return lambda wildcards: P.fingerprint(params, st.keys(dict(wildcards), params))
    return P.fingerprint(params, st.keys({}, params))


def final_targets(params: dict[str, Any]) -> list[str]:
    """Every stage's outputs for every instance: what `snakemake` builds by default."""
    targets: list[str] = []
    for st in S.STAGES:
        for axes in G.instances(st, params):
            targets += G.stage_outputs(st, axes, params).values()
    return targets
