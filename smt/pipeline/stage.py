"""The stage model: what one stage reads and writes, and the command both schedulers run.

Path templates use `{axis}` placeholders (`{benchmark}`, `{budget}`, `{generator}`) and `${dotted.key}` params
references. A template holding an axis that the stage does not have (the report reading
`results/scores/{benchmark}/...`) means "for every value that params.yaml lists".
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from smt.pipeline import derived, externals, targets
from smt.pipeline import params as P

# Each axis fans stages out over the values of a params key: the models, the benchmarks, the document
# generators, the recipes (which streams a model learns from) and the token budgets.
AXIS_VALUES_KEY = {
    "model": "models",
    "benchmark": "benchmarks",
    "generator": "synth_docs.generators",
    "recipe": "recipes",
    "budget": "mix.token_budgets",
}
AXIS_PATTERNS = {
    "model": "[a-z][a-z0-9_]*",
    "benchmark": "[A-Za-z0-9_]+",
    "generator": "[a-z_]+",
    "recipe": "[a-z][a-z0-9_]*",
    "budget": "[0-9]+",
}
# Axes whose instances read different files (each recipe its own streams): DVC gets one stage per value
# (`mix_<recipe>`, a matrix over the other axes), since one template cannot list different dependencies.
UNROLLED = ("recipe",)
# Inputs that a recipe decides: the records and manifests of the streams it mixes (smt.pipeline.graph).
RECIPE_STREAMS = "{recipe:streams}"
RECIPE_MANIFESTS = "{recipe:manifests}"
# Generation stages split their documents into this many shards (Snakemake runs one job per shard; see
# Stage.shards and smt/synth/engine.py). Outputs do not depend on it.
SHARDS_KEY = "generation.shards"
PARAM_REFS = re.compile(r"\$\{([a-z0-9_.{}]+)\}")
AXIS_REF = re.compile(r"\{([a-z_]+)\}")


@dataclass(frozen=True)
class Plot:
    """A DVC plot drawn from one output of every instance (top-level `plots:` in dvc.yaml), so that `dvc plots
    show` and `dvc plots diff <experiments>` put every instance and experiment on one chart."""

    name: str
    x: str
    y: str
    title: str
    x_label: str
    y_label: str
    template: str = "linear"  # a DVC template, or the name of one in .dvc/plots/


@dataclass(frozen=True)
class Output:
    path: str
    directory: bool = False
    # out | meta (small: manifests, details, provenance) | metric (the few numbers `dvc exp show` compares) |
    # plot (an image, or a table drawn by `plot`); all cached by DVC
    kind: str = "out"
    plot: Plot | None = None


@dataclass(frozen=True)
class Stage:
    """One stage: what it reads and writes, and the command both schedulers run."""

    name: str
    doc: str
    axes: tuple[str, ...]
    inputs: dict[str, str]
    outputs: dict[str, Output]
    params: tuple[str, ...]
    # The adapter module under smt/stages/ that runs the stage (default: the stage's name).
    module: str = ""
    # Further entry modules chosen by the instance (its generator, its benchmark's loader). The stage's code
    # dependencies are computed from these and its module (smt.pipeline.codedeps).
    entry: tuple[str, ...] = ()
    resources: dict[str, int] = field(default_factory=lambda: {"mem_mb": 2000, "runtime": 30, "gpu": 0})
    # Cores its Snakemake job holds (OMP_NUM_THREADS). Measured on 2 cores: batched decoding scales with threads
    # (float32, 16 rows: 2.0x on 2 threads; bfloat16 on AMX: 1.5x), while the prefill-bound steps (scoring, training,
    # embedding; bfloat16 on AMX) gain 1.0-1.4x, and two one-thread jobs side by side do as much as one two-thread
    # job, with their model loading and Python work overlapped. So every stage takes 1 and Snakemake runs them in
    # pairs; on a larger CPU machine `snakemake --set-threads synth_qa_shard=8` (or a profile's `set-threads`) gives
    # a rule more.
    threads: int = 1
    # Snakemake's `priority:` (higher first among jobs that are ready): the generation chain that every trained model
    # waits on (3), then mixing and training (2), then the long retrieval-context scoring (1), so the base model's
    # evaluations fill the core generation leaves free and no long job runs alone at the end.
    priority: int = 0
    heavy: bool = False  # its Snakemake rule records a `benchmark:` file (time, memory)
    env: str = "core"
    # Snakemake-only outputs of one shard (`{shard}` in the path), for stages that generate in shards: rule
    # `<name>_shard` makes them and the stage's own rule reads them (DVC runs the stage command, which runs
    # the shards itself).
    shards: dict[str, Output] = field(default_factory=dict)
    tests: tuple[str, ...] = ()  # the test modules that exercise it, shown in its rule

    @property
    def module_name(self) -> str:
        return f"smt.stages.{self.module or self.name}"

    @property
    def roots(self) -> tuple[str, ...]:
        """The files its code dependencies are computed from."""
        return (f"smt/stages/{self.module or self.name}.py", *self.entry)

    def keys(self, axes: dict[str, str], params: dict[str, Any] | None = None) -> tuple[str, ...]:
        """The params keys one instance reads: `{axis}` placeholders (e.g. `benchmarks.{benchmark}`) filled in,
        `${dotted.key}` references resolved against params (`models.${roles.student}.chat_template_kwargs`: the
        student's entry, whichever model that is), plus the key listing the values of every other axis its
        inputs range over (the report reads every benchmark's scores, so it reads `benchmarks`: dropping one
        changes what it reads)."""
        own = [resolve_key(k, params).format_map(axes) for k in self.params]  # two roles may name one model
        return tuple(dict.fromkeys(own)) + tuple(AXIS_VALUES_KEY[a] for a in self.fan_in_axes)

    @property
    def fan_in_axes(self) -> tuple[str, ...]:
        """Axes that are not the stage's own but that its input paths range over."""
        found = [a for path in self.inputs.values() for a in AXIS_REF.findall(PARAM_REFS.sub("", path))]
        return tuple(a for a in dict.fromkeys(found) if a not in self.axes)

    def derived(self, axes: dict[str, str]) -> list[str]:
        """The derived inputs (smt.pipeline.derived: model fingerprints, stream targets) one instance reads."""
        return [fill_axes(v, axes) for v in self.inputs.values() if derived.is_derived(v)]

    def command(self, placeholders: dict[str, str]) -> str:
        """The shell command, each axis given as its placeholder: '{wildcards.benchmark}' (Snakemake), '${key}'
        or '${item.budget}' (DVC), or a value."""
        parts = ["python -m smt", self.name]
        parts += [f"--{axis} {placeholders[axis]}" for axis in self.axes]
        return " ".join(parts)


def resolve_key(key: str, params: dict[str, Any] | None) -> str:
    """A declared key with its `${dotted.key}` references replaced by their values in params."""
    if not PARAM_REFS.search(key):
        return key
    if params is None:
        raise ValueError(f"params key {key!r} refers to other keys: resolving it needs the params")
    return PARAM_REFS.sub(lambda m: str(P.get(params, m.group(1))), key)


def external_inputs(*names: str) -> dict[str, str]:
    """Inputs naming the content fingerprints of model folders and packages (smt.pipeline.externals)."""
    return {
        f"external_{name.replace('.', '_').replace('{', '').replace('}', '')}": externals.path(name) for name in names
    }


def target_input(stream: str) -> dict[str, str]:
    """The input naming a stream's token target (smt.pipeline.targets)."""
    return {"target": targets.path("{benchmark}", stream)}


def fill_axes(template: str, axes: dict[str, str]) -> str:
    """Fill the given axes into a template, leaving any other `{axis}` as it is."""
    for axis, value in axes.items():
        template = template.replace("{" + axis + "}", value)
    return template


def dvc_name(st: Stage, axes: dict[str, str]) -> str:
    """The stage's name in dvc.yaml: its own, or one per value of an unrolled axis (`mix_smt`)."""
    return "_".join([st.name, *(axes[a] for a in st.axes if a in UNROLLED)])


def instance_id(st: Stage, axes: dict[str, str]) -> str:
    """DVC's id: 'name', 'name@value' (foreach) or 'name@value1-value2' (matrix); an unrolled axis is part of
    the name ('mix_smt@demo-4000')."""
    rest = [axes[a] for a in st.axes if a not in UNROLLED]
    return dvc_name(st, axes) + ("@" + "-".join(rest) if rest else "")


def _instance_name(st: Stage, axes: dict[str, str]) -> str:
    return "-".join(axes[a] for a in st.axes) or "all"


def stamp_path(st: Stage, axes: dict[str, str]) -> str:
    """The params stamp of one stage instance (see smt.pipeline.stamps)."""
    return f"results/.params/{st.name}/{_instance_name(st, axes)}.json"


def log_path(st: Stage, axes: dict[str, str]) -> str:
    return f"results/logs/{st.name}/{_instance_name(st, axes)}.log"


def lock_path(st: Stage, axes: dict[str, str], shard: int | str | None = None) -> str:
    """The lock file one run of the instance (or of one of its shards) holds (see smt.pipeline.locks)."""
    suffix = "" if shard is None else f".shard{shard}"
    return f"results/.locks/{st.name}/{_instance_name(st, axes)}{suffix}.lock"


def benchmark_path(st: Stage, axes: dict[str, str]) -> str:
    return f"results/benchmarks/{st.name}/{_instance_name(st, axes)}.tsv"


def shard_log_path(st: Stage, axes: dict[str, str], shard: int | str) -> str:
    return log_path(st, axes).replace(".log", f".shard{shard}.log")


def shard_outputs(st: Stage, axes: dict[str, str], shard: int) -> dict[str, str]:
    """Where one shard of a sharded stage instance writes (see Stage.shards)."""
    return {k: fill_axes(o.path, axes).replace("{shard}", str(shard)) for k, o in st.shards.items()}
