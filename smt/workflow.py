"""Helpers that build Snakemake rules from the stage registry (used by Snakefile and rules/*.smk).

Every rule gets: the stage's inputs plus its source modules and its params stamp (so edits to code and
params.yaml rerun exactly the readers), its outputs, its params fingerprint, a log, a benchmark file for heavy
stages, resources, and the same command DVC runs.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from smt import externals, gpus, tools
from smt import params as P
from smt import registry as R

CONDITIONS = R.CONDITIONS
AXIS_PATTERNS = R.AXIS_PATTERNS


class ConfigMismatch(ValueError):
    """Snakemake's config differs from params.yaml (e.g. --config overrides, which the stages would not see)."""


def load_params(config: dict[str, Any], path: str = "params.yaml") -> dict[str, Any]:
    """Validate params.yaml, insist Snakemake's config is exactly it, and bring what derives from it up to date
    (params stamps, external fingerprints, dvc.yaml)."""
    params = P.load(path)
    if config and config != params:
        raise ConfigMismatch(
            "params.yaml is the only configuration: Snakemake --config/--configfile overrides are not seen by the "
            "stages. Edit params.yaml (or use `dvc exp run -S key=value`)."
        )
    tools.prepare(params)
    return params


def _wildcard_template(template: str, st: R.Stage, params: dict[str, Any]) -> Any:
    """A registry template for Snakemake: own axes stay wildcards, other axes expand over params. A params
    reference that depends on an axis (`${benchmarks.{benchmark}.source}`) becomes an input function."""
    if any("{" + a + "}" in ref for a in st.axes for ref in R.PARAM_REFS.findall(template)):
        return lambda wildcards: source_files(R.expand(template, dict(wildcards), params))
    template = R.resolve_params_refs(template, params)
    foreign = [a for a in R.AXIS_VALUES_KEY if "{" + a + "}" in template and a not in st.axes]
    if not foreign:
        return template
    return R.expand(template, {}, params)


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


def inputs(name: str, params: dict[str, Any]) -> dict[str, Any]:
    """A rule's inputs; a sharded stage's rule also reads every shard's outputs (its `<name>_shard` jobs)."""
    st = R.stage(name)
    found = shard_inputs(name, params)
    if st.shards:
        count = P.get(params, R.SHARDS_KEY)
        found["shards"] = [o.path.replace("{shard}", str(i)) for i in range(count) for o in st.shards.values()]
    return found


def shard_inputs(name: str, params: dict[str, Any]) -> dict[str, Any]:
    """What one shard job reads: everything its stage reads (files, code, params stamp)."""
    st = R.stage(name)
    found: dict[str, Any] = {
        k: _wildcard_template(v, st, params)
        for k, v in st.inputs.items()
        if not v.startswith(externals.FOLDER + "/")  # their content is in the params stamp (smt.stamps)
    }
    found["code"] = list(R.code_templates(st))
    found["params_stamp"] = _stamp_template(st)
    return found


def shard_outputs(name: str) -> dict[str, Any]:
    """A shard's outputs, temporary: Snakemake removes them once the stage's rule has merged them (the merge
    removes them too, for runs under DVC)."""
    from snakemake.io import temp

    return {k: temp(o.path) for k, o in R.stage(name).shards.items()}


def shard_log(name: str) -> str:
    st = R.stage(name)
    return R.shard_log_path(st, _axes_as_wildcards(st), "{shard}")


def shard_benchmark(name: str) -> str:
    return shard_log(name).replace("results/logs/", "results/benchmarks/").replace(".log", ".tsv")


def shard_command(name: str) -> str:
    return command(name) + " --shard {wildcards.shard}"


def outputs(name: str) -> dict[str, Any]:
    from snakemake.io import directory

    st = R.stage(name)
    return {k: directory(o.path) if o.directory else o.path for k, o in st.outputs.items()}


def _axes_as_wildcards(st: R.Stage) -> dict[str, str]:
    return {a: "{" + a + "}" for a in st.axes}


def _stamp_template(st: R.Stage) -> str:
    return R.stamp_path(st, _axes_as_wildcards(st))


def log(name: str) -> str:
    st = R.stage(name)
    return R.log_path(st, _axes_as_wildcards(st))


def benchmark(name: str) -> str:
    st = R.stage(name)
    return (
        R.log_path(st, _axes_as_wildcards(st)).replace("results/logs/", "results/benchmarks/").replace(".log", ".tsv")
    )


def fingerprint(name: str, params: dict[str, Any]) -> Any:
    """The hash of the params values a job reads (a function of the wildcards for per-axis keys)."""
    st = R.stage(name)
    if st.axes:
        return lambda wildcards: P.fingerprint(params, st.keys(dict(wildcards)))
    return P.fingerprint(params, st.keys({}))


def resources(name: str) -> dict[str, int]:
    return dict(R.stage(name).resources)


def threads(name: str) -> int:
    return R.stage(name).threads


def command(name: str) -> str:
    """The stage's command, told how many GPUs this job holds (its `gpu` resource, which profiles set), so
    that concurrent jobs claim distinct devices (smt.gpus)."""
    st = R.stage(name)
    return f"{gpus.REQUEST_VAR}={{resources.gpu}} " + st.command({a: f"{{wildcards.{a}}}" for a in st.axes})


def conda_env(name: str) -> str:
    return f"../envs/{R.stage(name).env}.yaml"


def final_targets(params: dict[str, Any]) -> list[str]:
    """Every stage's outputs for every benchmark: what `snakemake` builds by default."""
    targets: list[str] = []
    for st in R.STAGES:
        for axes in R.instances(st, params):
            targets += R.stage_outputs(st, axes, params).values()
    return targets
