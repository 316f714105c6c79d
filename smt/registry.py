"""The stage registry: every stage of the pipeline declared once.

Snakemake rules (rules/*.smk) and the rendered dvc.yaml are both built from these declarations, so the two
schedulers agree on what each stage reads (files, params keys, source modules) and writes.

Path templates use `{benchmark}` for the stage's axis. A template holding an axis that the stage does not
have (e.g. the report reading `results/scores/{benchmark}/...`) means "for every value in params".
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass, field
from typing import Any

from smt import codedeps, externals
from smt import params as P

CONDITIONS = ("closed_book_base", "rag_base", "smt_closed_book", "smt_rag")
# Each axis fans stages out over the values of a params key: the benchmarks mapping's names, the token budgets.
AXIS_VALUES_KEY = {"benchmark": "benchmarks", "budget": "mix.token_budgets", "generator": "synth_docs.generators"}
AXIS_PATTERNS = {"benchmark": "[A-Za-z0-9_]+", "budget": "[0-9]+", "generator": "[a-z_]+"}
BASE_MODEL = "results/models/base"
MIX = "results/mix/{benchmark}/{budget}/train.jsonl"
SMT_MODEL = "results/models/smt/{benchmark}/{budget}"
DOCUMENTS = "results/data/{benchmark}/documents.parquet"
QUESTIONS = "results/data/{benchmark}/questions.parquet"
INDEX = "results/index/{benchmark}"
SCORE = "results/scores/{benchmark}/{condition}.json"
SMT_SCORE = "results/scores/{benchmark}/{budget}/{condition}.json"

GENERATION_KEYS = (
    "generation.backend",
    "generation.batch_size",
    "generation.dtype",
    "generation.shards",
    "generation.vllm",
    "generation.http",
)
# Generation stages split their documents into this many shards (Snakemake runs one job per shard; see
# Stage.shards and smt/shards.py). Outputs do not depend on it.
SHARDS_KEY = "generation.shards"
QA = "results/synth/{benchmark}/qa.jsonl"
DOCS = "results/synth/{benchmark}/docs/{generator}.jsonl"
CONTAMINATION = "results/synth/{benchmark}/contamination.json"
EVAL_KEYS = (
    "seed",
    "eval.scorer",
    "eval.max_questions",
    "eval.batch_size",
    "eval.max_new_tokens",
    "eval.bootstrap_resamples",
    "eval.judge_model",
)
HITS = "results/retrieval/{benchmark}/hits.jsonl"
RETRIEVAL_REPORT = "results/retrieval/{benchmark}/retrieval_report.json"


@dataclass(frozen=True)
class Output:
    path: str
    directory: bool = False
    kind: str = "out"  # out | meta (small: manifests, details) | metric | plot; all cached by DVC
    plot_xy: tuple[str, str] | None = None  # columns of a plot's x and y axes


@dataclass(frozen=True)
class Stage:
    """One stage: what it reads and writes, and the command both schedulers run."""

    name: str
    doc: str
    axes: tuple[str, ...]
    inputs: dict[str, str]
    outputs: dict[str, Output]
    params: tuple[str, ...]
    # The stage's entry modules; its code dependencies are computed from them (smt.codedeps).
    code: tuple[str, ...]
    command_args: tuple[str, ...] = ()
    resources: dict[str, int] = field(default_factory=lambda: {"mem_mb": 2000, "runtime": 30, "gpu": 0})
    threads: int = 1
    heavy: bool = False  # its Snakemake rule records a `benchmark:` file (time, memory)
    env: str = "core"
    # Snakemake-only outputs of one shard (`{shard}` in the path), for stages that generate in shards: rule
    # `<name>_shard` makes them and the stage's own rule reads them (DVC runs the stage command, which runs
    # the shards itself).
    shards: dict[str, Output] = field(default_factory=dict)

    def keys(self, axes: dict[str, str]) -> tuple[str, ...]:
        """The params keys one instance reads: `{axis}` placeholders (e.g. `benchmarks.{benchmark}`) filled in,
        plus the key listing the values of every other axis its inputs range over (the report reads every
        benchmark's scores, so it reads `benchmarks`: dropping one changes what it reads)."""
        return tuple(k.format_map(axes) for k in self.params) + tuple(AXIS_VALUES_KEY[a] for a in self.fan_in_axes)

    @property
    def fan_in_axes(self) -> tuple[str, ...]:
        """Axes that are not the stage's own but that its input paths range over."""
        found = [a for path in self.inputs.values() for a in _AXIS_REF.findall(_without_refs(path))]
        return tuple(a for a in dict.fromkeys(found) if a not in self.axes)

    def command(self, placeholders: dict[str, str]) -> str:
        """The shell command, each axis given as its placeholder: '{wildcards.benchmark}' (Snakemake), '${key}'
        or '${item.budget}' (DVC), or a value."""
        parts = ["python -m smt", self.name, *self.command_args]
        parts += [f"--{axis} {placeholders[axis]}" for axis in self.axes]
        return " ".join(parts)


def _without_refs(template: str) -> str:
    return PARAM_REFS.sub("", template)


def external_inputs(*names: str) -> dict[str, str]:
    """Inputs naming the content fingerprints of model folders and packages (smt.externals)."""
    return {f"external_{name.replace('.', '_')}": externals.path(name) for name in names}


def external_names(st: Stage) -> list[str]:
    """The references (smt.externals) whose fingerprints a stage reads."""
    prefix = externals.FOLDER + "/"
    return [v[len(prefix) : -len(".json")] for v in st.inputs.values() if v.startswith(prefix)]


def _out(path: str, **kw: Any) -> Output:
    return Output(path, **kw)


def score_path(condition: str) -> str:
    """Where a condition's score lands: per benchmark, and per token budget for the SMT models."""
    return (SMT_SCORE if condition.startswith("smt") else SCORE).replace("{condition}", condition)


def _eval_stage(condition: str) -> Stage:
    rag = "rag" in condition.split("_")
    smt = condition.startswith("smt")
    inputs = {"model": SMT_MODEL if smt else BASE_MODEL, "questions": QUESTIONS, "documents": DOCUMENTS}
    score = score_path(condition)
    inputs["judge"] = BASE_MODEL  # free-form answers are judged by the base model unless eval.judge_model is set
    inputs.update(external_inputs("eval.judge_model"))
    if rag:
        inputs["hits"] = HITS
        inputs["retrieval_report"] = RETRIEVAL_REPORT  # summarized in the score file
    code = ("smt/stages/evaluate.py",)
    return Stage(
        name=f"eval_{condition}",
        doc=f"Score the {'SMT' if smt else 'base'} model {'with retrieval' if rag else 'closed-book'}.",
        axes=("benchmark", "budget") if smt else ("benchmark",),
        inputs=inputs,
        outputs={
            "score": _out(score, kind="metric"),
            "predictions": _out(score.replace(".json", ".predictions.jsonl")),
        },
        params=EVAL_KEYS,
        code=code,
        command_args=(),
        resources={"mem_mb": 4000, "runtime": 30, "gpu": 0},
        threads=2,
        heavy=True,
        env="evaluate",
    )


STAGES: tuple[Stage, ...] = (
    Stage(
        name="model",
        doc="Materialize the base model (generator and student) as a normal Hugging Face model folder.",
        axes=(),
        inputs=external_inputs("model"),
        outputs={"model": _out(BASE_MODEL, directory=True)},
        params=("model.source", "model.id", "model.package", "model.gguf_file", "model.path", "model.dtype"),
        code=("smt/stages/model.py",),
        resources={"mem_mb": 4000, "runtime": 20, "gpu": 0},
        env="train",
    ),
    Stage(
        name="ingest",
        doc="Read a benchmark's published files into normalized tables (documents, questions) and a report.",
        axes=("benchmark",),
        inputs={"source": "${benchmarks.{benchmark}.source}"},
        outputs={
            "documents": _out(DOCUMENTS),
            "questions": _out(QUESTIONS),
            "report": _out("results/data/{benchmark}/ingest_report.json", kind="metric"),
            "details": _out("results/data/{benchmark}/ingest_details.json", kind="meta"),
        },
        params=("benchmarks.{benchmark}", "ingest.max_documents"),
        code=("smt/stages/ingest.py", "smt/benchmarks/loaders/{benchmark}.py"),
        resources={"mem_mb": 4000, "runtime": 30, "gpu": 0},
        threads=2,
        heavy=True,
    ),
    Stage(
        name="synth_qa",
        doc="Generate open-ended synthetic QAs (question, answer with explanation) per document.",
        axes=("benchmark",),
        inputs={"model": BASE_MODEL, "documents": DOCUMENTS},
        outputs={
            "qa": _out(QA),
            "manifest": _out("results/synth/{benchmark}/qa.manifest.json", kind="meta"),
        },
        shards={
            "records": _out("results/synth/{benchmark}/shards/qa/{shard}.jsonl"),
            "manifest": _out("results/synth/{benchmark}/shards/qa/{shard}.manifest.json"),
        },
        params=(
            "seed",
            *GENERATION_KEYS,
            "synth_qa.per_document",
            "synth_qa.temperature",
            "synth_qa.top_p",
            "synth_qa.max_new_tokens",
        ),
        code=("smt/stages/synth_qa.py",),
        resources={"mem_mb": 4000, "runtime": 120, "gpu": 0},
        threads=2,
        heavy=True,
        env="generate",
    ),
    Stage(
        name="synth_docs",
        doc="Generate synthetic documents with one generator (Active Reading, Focal Rewriting, WRAP, EntiGraph).",
        axes=("benchmark", "generator"),
        # Every generator reads the QA stream (Focal Rewriting needs its questions): one declaration for all.
        inputs={"model": BASE_MODEL, "documents": DOCUMENTS, "qa": QA},
        outputs={
            "docs": _out(DOCS),
            "manifest": _out("results/synth/{benchmark}/docs/{generator}.manifest.json", kind="meta"),
        },
        shards={
            "records": _out("results/synth/{benchmark}/shards/docs/{generator}/{shard}.jsonl"),
            "manifest": _out("results/synth/{benchmark}/shards/docs/{generator}/{shard}.manifest.json"),
        },
        params=(
            "seed",
            *GENERATION_KEYS,
            "synth_docs.temperature",
            "synth_docs.top_p",
            "synth_docs.max_new_tokens",
            "synth_docs.generators.{generator}",
        ),
        code=("smt/stages/synth_docs.py", "smt/generators/{generator}.py"),
        resources={"mem_mb": 4000, "runtime": 240, "gpu": 0},
        threads=2,
        heavy=True,
        env="generate",
    ),
    Stage(
        name="synth_contamination",
        doc="Check synthetic texts for n-gram overlap with the benchmark's questions and options; fail above a limit.",
        axes=("benchmark",),
        inputs={"qa": QA, "docs": DOCS, "questions": QUESTIONS, "documents": DOCUMENTS},
        outputs={"report": _out(CONTAMINATION, kind="metric")},
        params=("audit.ngram", "audit.max_contamination"),
        code=("smt/stages/synth_contamination.py",),
        resources={"mem_mb": 2000, "runtime": 30, "gpu": 0},
    ),
    Stage(
        name="synth_audit",
        doc="Measure the synthetic data: tokens per stream and generator, lexical and semantic (Vendi) diversity.",
        axes=("benchmark",),
        inputs={"model": BASE_MODEL, "qa": QA, "docs": DOCS, **external_inputs("audit.embedding_model")},
        outputs={"report": _out("results/synth/{benchmark}/audit.json", kind="metric")},
        params=("seed", "audit.embedding_model", "audit.max_items_per_generator"),
        code=("smt/stages/synth_audit.py",),
        resources={"mem_mb": 2000, "runtime": 60, "gpu": 0},
        threads=2,
        heavy=True,
        env="evaluate",
    ),
    Stage(
        name="mix",
        doc="Mix synthetic QAs and documents to a token budget and ratio, plus replay text.",
        axes=("benchmark", "budget"),
        inputs={
            "model": BASE_MODEL,
            "qa": QA,
            "docs": DOCS,
            "replay": "${mix.replay_corpus}",
            "contamination": CONTAMINATION,  # mix runs only on synthetic data that passed the contamination check
            # generated tokens and generator models, for the compute estimate C = 2MD + 6ND
            "qa_manifest": "results/synth/{benchmark}/qa.manifest.json",
            "docs_manifests": "results/synth/{benchmark}/docs/{generator}.manifest.json",
        },
        outputs={
            "train": _out(MIX),
            "report": _out("results/mix/{benchmark}/{budget}/mix_report.json", kind="metric"),
        },
        params=("seed", "mix.qa_share", "mix.replay_fraction", "mix.replay_corpus"),
        code=("smt/stages/mix.py",),
        resources={"mem_mb": 2000, "runtime": 10, "gpu": 0},
    ),
    Stage(
        name="train",
        doc="Continued training of the student on the mix with TRL SFTTrainer.",
        axes=("benchmark", "budget"),
        inputs={"model": BASE_MODEL, "train": MIX, "mix_report": "results/mix/{benchmark}/{budget}/mix_report.json"},
        outputs={
            "model": _out(SMT_MODEL, directory=True),
            "loss": _out("results/train/{benchmark}/{budget}/loss.csv", kind="plot", plot_xy=("step", "loss")),
            "metrics": _out("results/train/{benchmark}/{budget}/train_metrics.json", kind="metric"),
        },
        params=(
            "seed",
            *tuple(
                f"train.{k}"
                for k in (
                    "mode",
                    "loss",
                    "epochs",
                    "max_steps",
                    "effective_batch_size",
                    "per_device_batch_size",
                    "max_length",
                    "learning_rate",
                    "warmup_ratio",
                    "lr_scheduler",
                    "weight_decay",
                    "adam_beta1",
                    "adam_beta2",
                    "packing",
                    "lora_r",
                    "lora_alpha",
                    "precision",
                    "gradient_checkpointing",
                    "save_steps",
                )
            ),
        ),
        code=("smt/stages/train.py",),
        resources={"mem_mb": 8000, "runtime": 240, "gpu": 0},
        threads=2,
        heavy=True,
        env="train",
    ),
    Stage(
        name="rag_index",
        doc="Chunk the documents and build BM25 (rank-bm25) and dense (faiss) indexes.",
        axes=("benchmark",),
        inputs={"documents": DOCUMENTS, **external_inputs("rag.embedding_model")},
        outputs={"index": _out(INDEX, directory=True)},
        params=("rag.chunk_unit", "rag.chunk_size", "rag.chunk_overlap", "rag.prepend_metadata", "rag.embedding_model"),
        code=("smt/stages/rag_index.py",),
        resources={"mem_mb": 2000, "runtime": 30, "gpu": 0},
        threads=2,
        heavy=True,
        env="evaluate",
    ),
    Stage(
        name="retrieve",
        doc="Retrieve (and optionally rerank) the chunks for every question once, for both RAG conditions.",
        axes=("benchmark",),
        inputs={
            "index": INDEX,
            "questions": QUESTIONS,
            "documents": DOCUMENTS,
            "model": BASE_MODEL,
            **external_inputs("rag.embedding_model", "rag.reranker_model"),
        },
        outputs={
            "hits": _out(HITS),
            "report": _out(RETRIEVAL_REPORT, kind="metric"),
        },
        params=(
            "rag.embedding_model",
            "rag.retriever",
            "rag.top_k_retrieve",
            "rag.top_k",
            "rag.reranker",
            "rag.reranker_model",
            "rag.context_order",
        ),
        code=("smt/stages/retrieve.py",),
        resources={"mem_mb": 4000, "runtime": 30, "gpu": 0},
        threads=2,
        heavy=True,
        env="evaluate",
    ),
    *(_eval_stage(c) for c in CONDITIONS),
    Stage(
        name="scaling",
        doc="Accuracy vs synthetic tokens over the budget sweep: log-linear fit, DVC plot and PNG figure.",
        axes=("benchmark",),
        inputs={
            "smt_closed_book": score_path("smt_closed_book"),
            "smt_rag": score_path("smt_rag"),
            "rag_base": score_path("rag_base"),
            "mix_reports": "results/mix/{benchmark}/{budget}/mix_report.json",
        },
        outputs={
            "points": _out(
                "results/scaling/{benchmark}/points.csv", kind="plot", plot_xy=("synthetic_tokens", "accuracy")
            ),
            "fit": _out("results/scaling/{benchmark}/scaling.json", kind="metric"),
            "figure": _out("results/scaling/{benchmark}/scaling.png", kind="plot"),
        },
        params=(),
        code=("smt/stages/scaling.py",),
        resources={"mem_mb": 1000, "runtime": 5, "gpu": 0},
    ),
    Stage(
        name="report",
        doc="The results page: scores with intervals, scaling figures and compute, as markdown and HTML.",
        axes=(),
        inputs={
            **{f"scores_{c}": score_path(c) for c in CONDITIONS},
            "scaling_fits": "results/scaling/{benchmark}/scaling.json",
            "scaling_figures": "results/scaling/{benchmark}/scaling.png",
            "train_metrics": "results/train/{benchmark}/{budget}/train_metrics.json",
            "qa_manifests": "results/synth/{benchmark}/qa.manifest.json",
            "docs_manifests": "results/synth/{benchmark}/docs/{generator}.manifest.json",
            "base_model": BASE_MODEL,
        },
        outputs={
            "report": _out("results/report.md"),
            "html": _out("results/report.html"),
            "compute": _out("results/compute.json", kind="metric"),
        },
        params=("report.decimals",),
        code=("smt/stages/report.py",),
        resources={"mem_mb": 500, "runtime": 5, "gpu": 0},
    ),
)

BY_NAME: dict[str, Stage] = {s.name: s for s in STAGES}


def stage(name: str) -> Stage:
    if name not in BY_NAME:
        raise KeyError(f"unknown stage '{name}'; stages: {sorted(BY_NAME)}")
    return BY_NAME[name]


# ---------------------------------------------------------------------------------------------- instances

PARAM_REFS = re.compile(r"\$\{([a-z0-9_.{}]+)\}")
_AXIS_REF = re.compile(r"\{([a-z_]+)\}")


def resolve_params_refs(template: str, params: dict[str, Any]) -> str:
    """Replace `${dotted.key}` with its value from params."""
    return PARAM_REFS.sub(lambda m: str(P.get(params, m.group(1))), template)


def axis_values(params: dict[str, Any], axis: str) -> list[str]:
    """The values an axis takes: a mapping's keys or a list's items, as strings."""
    return [str(v) for v in P.get(params, AXIS_VALUES_KEY[axis])]


def instances(st: Stage, params: dict[str, Any]) -> list[dict[str, str]]:
    """Every axis assignment of a stage under these params (static fan-out)."""
    result: list[dict[str, str]] = [{}]
    for axis in st.axes:
        result = [{**r, axis: v} for r in result for v in axis_values(params, axis)]
    return result


def instance_id(st: Stage, axes: dict[str, str]) -> str:
    """DVC's id: 'name', 'name@value' (foreach) or 'name@value1-value2' (matrix)."""
    return st.name + ("@" + "-".join(axes[a] for a in st.axes) if st.axes else "")


def fill_axes(template: str, axes: dict[str, str]) -> str:
    """Fill the given axes into a template, leaving any other `{axis}` as it is."""
    for axis, value in axes.items():
        template = template.replace("{" + axis + "}", value)
    return template


def expand(template: str, axes: dict[str, str], params: dict[str, Any]) -> list[str]:
    """Concrete paths of a template: the stage's own axes filled, params refs resolved, any other axis
    expanded over params."""
    template = resolve_params_refs(fill_axes(template, axes), params)
    paths = [template]
    for axis in _AXIS_REF.findall(template):
        values = [axes[axis]] if axis in axes else axis_values(params, axis)
        paths = [p.replace("{" + axis + "}", v) for p in paths for v in values]
    return paths


def stamp_path(st: Stage, axes: dict[str, str]) -> str:
    """The params stamp of one stage instance (see smt.stamps)."""
    name = "-".join(axes[a] for a in st.axes) or "all"
    return f"results/.params/{st.name}/{name}.json"


def shard_outputs(st: Stage, axes: dict[str, str], shard: int) -> dict[str, str]:
    """Where one shard of a sharded stage instance writes (see Stage.shards)."""
    return {k: fill_axes(o.path, axes).replace("{shard}", str(shard)) for k, o in st.shards.items()}


def shard_log_path(st: Stage, axes: dict[str, str], shard: int | str) -> str:
    return log_path(st, axes).replace(".log", f".shard{shard}.log")


def log_path(st: Stage, axes: dict[str, str]) -> str:
    name = "-".join(axes[a] for a in st.axes) or "all"
    return f"results/logs/{st.name}/{name}.log"


def stage_inputs(st: Stage, axes: dict[str, str], params: dict[str, Any]) -> dict[str, list[str]]:
    return {k: expand(v, axes, params) for k, v in st.inputs.items()}


def stage_outputs(st: Stage, axes: dict[str, str], params: dict[str, Any]) -> dict[str, str]:
    return {k: expand(o.path, axes, params)[0] for k, o in st.outputs.items()}


def _under(path: str, parent: str) -> bool:
    return path == parent or path.startswith(parent.rstrip("/") + "/")


def graph(params: dict[str, Any]) -> dict[str, set[str]]:
    """Instance id -> ids of the instances that read one of its outputs."""
    nodes = [(st, ax) for st in STAGES for ax in instances(st, params)]
    produced = {instance_id(st, ax): list(stage_outputs(st, ax, params).values()) for st, ax in nodes}
    edges: dict[str, set[str]] = {iid: set() for iid in produced}
    for st, ax in nodes:
        reader = instance_id(st, ax)
        for paths in stage_inputs(st, ax, params).values():
            for path in paths:
                for writer, outs in produced.items():
                    if any(_under(path, o) or _under(o, path) for o in outs):
                        edges[writer].add(reader)
    return edges


def downstream(params: dict[str, Any], roots: set[str]) -> set[str]:
    """The roots and every instance that depends on them, transitively."""
    edges = graph(params)
    seen: set[str] = set()
    todo = list(roots)
    while todo:
        node = todo.pop()
        if node not in seen:
            seen.add(node)
            todo.extend(edges.get(node, ()))
    return seen


def changed_instances(old: dict[str, Any], new: dict[str, Any]) -> set[str]:
    """Instances under `new` whose params values differ from `old`, or that `old` does not have."""
    before = {instance_id(st, ax): P.subset(old, st.keys(ax)) for st in STAGES for ax in instances(st, old)}
    return {
        instance_id(st, ax)
        for st in STAGES
        for ax in instances(st, new)
        if before.get(instance_id(st, ax)) != P.subset(new, st.keys(ax))
    }


def related_keys(a: str, b: str) -> bool:
    """Whether two dotted keys are the same, or one holds the other."""
    return a == b or a.startswith(b + ".") or b.startswith(a + ".")


def readers_of_key(params: dict[str, Any], key: str) -> set[str]:
    """Instances that read this params key (or a parent/child of it)."""
    return {
        instance_id(st, ax)
        for st in STAGES
        for ax in instances(st, params)
        if any(related_keys(k, key) for k in st.keys(ax))
    }


def axis_universe(axis: str) -> tuple[str, ...]:
    """Every value an axis can take by the schema (a mapping's allowed keys), for code templates."""
    node = P.schema()
    for part in AXIS_VALUES_KEY[axis].split("."):
        node = node["properties"][part]
    return tuple(node.get("properties", {}))


def code_templates(st: Stage) -> tuple[str, ...]:
    """A stage's source, prompt and data files, computed from its entry modules (smt.codedeps), with `{axis}`
    where a file is chosen by the instance (its generator's module and prompts, its benchmark's loader)."""
    return _code_templates(st.code)


@functools.cache
def _code_templates(roots: tuple[str, ...]) -> tuple[str, ...]:
    axes = {a for root in roots for a in _AXIS_REF.findall(root)}
    return codedeps.templates(roots, {a: axis_universe(a) for a in axes})


def stage_code(st: Stage, axes: dict[str, str]) -> tuple[str, ...]:
    """The source files one instance depends on (`{axis}` filled in, e.g. its benchmark's loader)."""
    return tuple(fill_axes(c, axes) for c in code_templates(st))


def readers_of_file(params: dict[str, Any], path: str) -> set[str]:
    """Instances that list this file among their code dependencies or read it as an input."""
    return {
        instance_id(st, ax)
        for st in STAGES
        for ax in instances(st, params)
        if path in stage_code(st, ax) or any(path in paths for paths in stage_inputs(st, ax, params).values())
    }
