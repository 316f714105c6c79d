"""The stage table: every stage of the pipeline declared once.

Snakemake's rules (rules/*.smk, rendered) and DVC's dvc.yaml (rendered) are both built from these declarations,
so the two schedulers agree on what each stage reads (files, params keys, code) and writes. A stage's code
dependencies are computed from its module (smt/stages/<name>.py) and entry modules (smt.pipeline.codedeps).

Longer than 300 lines: one declaration per stage, in the order the data flows, meant to be read top to bottom.
"""

from __future__ import annotations

from typing import Any

from smt.eval.conditions import CONDITIONS
from smt.pipeline import targets
from smt.pipeline.stage import RECIPE_MANIFESTS, RECIPE_STREAMS, Output, Plot, Stage, external_inputs, target_input
from smt.train.spec import HYPERPARAMETERS

BASE_MODEL = "results/models/base/{model}"
GENERATOR = "results/models/base/${roles.generator}"  # the model each role names (params.yaml `roles`)
STUDENT = "results/models/base/${roles.student}"
JUDGE = "results/models/base/${roles.judge}"
MIX = "results/mix/{benchmark}/{recipe}/{budget}/train.jsonl"
MIX_REPORT = "results/mix/{benchmark}/{recipe}/{budget}/mix_report.json"
SMT_MODEL = "results/models/smt/{benchmark}/{recipe}/{budget}"
DOCUMENTS = "results/data/{benchmark}/documents.parquet"
QUESTIONS = "results/data/{benchmark}/questions.parquet"
INDEX = "results/index/{benchmark}"
SCORE = "results/scores/{benchmark}/{condition}.json"
SMT_SCORE = "results/scores/{benchmark}/{recipe}/{budget}/{condition}.json"

MODEL_KEYS = ("source", "id", "package", "gguf_file", "path", "dtype")
GENERATOR_CHAT = "models.${roles.generator}.chat_template_kwargs"  # the chat-template variables of a role's model
STUDENT_CHAT = "models.${roles.student}.chat_template_kwargs"
JUDGE_CHAT = "models.${roles.judge}.chat_template_kwargs"
GENERATION_KEYS = (
    GENERATOR_CHAT,
    "generation.backend",
    "generation.batch_size",
    "generation.dtype",
    "generation.shards",
    "generation.target_margin",
    "generation.max_rounds",
    "generation.section_by",
    "generation.section_tokens",
    "generation.vllm",
    "generation.http",
)
QA = "results/synth/{benchmark}/qa.jsonl"
DOCS = "results/synth/{benchmark}/docs/{generator}.jsonl"
CONTAMINATION = "results/synth/{benchmark}/contamination.json"
EVAL_KEYS = (
    "seed",
    "eval.scorer",
    "eval.extra_scorers",
    "eval.dtype",
    "eval.backend",
    "eval.max_questions",
    "eval.batch_size",
    "eval.max_new_tokens",
    "eval.generate",
    "eval.bootstrap_resamples",
    "roles.judge",
    STUDENT_CHAT,  # the trained model is the student's, with its chat template
    JUDGE_CHAT,
)
HITS = "results/retrieval/{benchmark}/hits.jsonl"
RETRIEVAL_REPORT = "results/retrieval/{benchmark}/retrieval_report.json"
INGEST_REPORT = "results/data/{benchmark}/ingest_report.json"
AUDIT = "results/synth/{benchmark}/audit.json"
TRAIN_METRICS = "results/train/{benchmark}/{recipe}/{budget}/train_metrics.json"
SCALING_FIT = "results/scaling/{benchmark}/scaling.json"
COMPUTE = "results/compute.json"
# The only DVC metrics file: the few numbers `dvc exp show` compares across runs (smt/eval/summary.py). Every
# other JSON output (score files, reports, manifests) is a cached output that keeps its provenance and detail.
METRICS = "results/metrics.json"
LOSS_PLOT = Plot(
    name="training_loss",
    x="step",
    y="loss",
    title="Training loss per optimizer step (one line per recipe and budget)",
    x_label="optimizer step",
    y_label="training loss",
)
SCALING_PLOT = Plot(
    name="accuracy_vs_synthetic_tokens",
    x="synthetic_tokens",
    y="accuracy",
    title="Accuracy vs unique synthetic tokens (log scale; dash: recipe, shape: condition)",
    x_label="unique synthetic training tokens (log scale)",
    y_label="accuracy",
    template="log_x",  # .dvc/plots/log_x.json: DVC's own templates have no log axis
)


def stream_files(shares: dict[str, float], benchmark: str, manifests: bool = False) -> list[str]:
    """The records (or manifests) of a recipe's streams for the mix of `benchmark` (a stream named
    `<benchmark>/<stream>` is drawn from that benchmark)."""
    found = []
    for name in shares:
        source, stream = targets.split(name, benchmark)
        path = QA if stream == "qa" else DOCS.replace("{generator}", stream)
        path = path.replace("{benchmark}", source)
        found.append(path.replace(".jsonl", ".manifest.json") if manifests else path)
    return found


def _out(path: str, **kw: Any) -> Output:
    return Output(path, **kw)


def score_path(condition: str) -> str:
    """Where a condition's score lands: per benchmark, and per recipe and token budget for the SMT models."""
    return (SMT_SCORE if condition.startswith("smt") else SCORE).replace("{condition}", condition)


def _eval_stage(condition: str) -> Stage:
    rag = "rag" in condition.split("_")
    smt = condition.startswith("smt")
    inputs = {"model": SMT_MODEL if smt else STUDENT, "questions": QUESTIONS, "documents": DOCUMENTS}
    score = score_path(condition)
    inputs["judge"] = JUDGE  # grades free-form answers
    inputs["shots"] = "${eval.generate.shots_file}"  # the generate scorer's worked examples
    if rag:
        inputs["hits"] = HITS
        inputs["retrieval_report"] = RETRIEVAL_REPORT  # summarized in the score file
    return Stage(
        name=f"eval_{condition}",
        doc=f"Score the {'SMT' if smt else 'base'} model {'with retrieval' if rag else 'closed-book'}.",
        axes=("benchmark", "recipe", "budget") if smt else ("benchmark",),
        inputs=inputs,
        outputs={
            "score": _out(score, kind="meta"),
            "predictions": _out(score.replace(".json", ".predictions.jsonl")),
        },
        params=EVAL_KEYS if smt else (*EVAL_KEYS, "roles.student"),
        module="evaluate",
        tests=(
            "tests/stages/test_evaluate.py",
            "tests/eval/test_scorers.py",
            "tests/eval/test_scoring.py",
            "tests/faults/test_kill_points.py",
        ),
        resources={"mem_mb": 4000, "runtime": 30, "gpu": 0},
        threads=1,
        priority=1 if rag else 0,  # the longer retrieval-context scoring first, so no long job runs alone at the end
        heavy=True,
        env="evaluate",
    )


STAGES: tuple[Stage, ...] = (
    Stage(
        name="model",
        doc="Materialize a model (generator, student or judge) once as a normal Hugging Face model folder.",
        axes=("model",),
        inputs=external_inputs("models.{model}"),
        outputs={"model": _out(BASE_MODEL, directory=True)},
        # every key of the entry but chat_template_kwargs: those shape prompts, not the weights, and are read by
        # the stages that apply the model's chat template
        params=tuple(f"models.{{model}}.{key}" for key in MODEL_KEYS),
        resources={"mem_mb": 4000, "runtime": 20, "gpu": 0},
        env="train",
        tests=("tests/pipeline/test_builds.py",),
    ),
    Stage(
        name="ingest",
        doc="Read a benchmark's published files into normalized tables (documents, questions) and a report.",
        axes=("benchmark",),
        inputs={"source": "${benchmarks.{benchmark}.source}"},
        outputs={
            "documents": _out(DOCUMENTS),
            "questions": _out(QUESTIONS),
            "report": _out(INGEST_REPORT, kind="meta"),
            "details": _out("results/data/{benchmark}/ingest_details.json", kind="meta"),
        },
        params=("benchmarks.{benchmark}", "ingest.max_documents"),
        entry=("smt/benchmarks/loaders/{benchmark}.py",),
        resources={"mem_mb": 4000, "runtime": 30, "gpu": 0},
        threads=1,
        heavy=True,
        tests=("tests/stages/test_ingest.py", "tests/benchmarks/test_loaders.py", "tests/faults/test_bad_inputs.py"),
    ),
    Stage(
        name="synth_qa",
        doc="Generate open-ended synthetic QAs (question, answer with explanation) per document.",
        axes=("benchmark",),
        inputs={"model": GENERATOR, "documents": DOCUMENTS, **target_input("qa")},
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
            "roles.generator",
            *GENERATION_KEYS,
            "synth_qa.per_request",
            "synth_qa.per_document",
            "synth_qa.temperature",
            "synth_qa.top_p",
            "synth_qa.max_new_tokens",
        ),
        resources={"mem_mb": 4000, "runtime": 120, "gpu": 0},
        threads=1,  # beside it the base model's evaluations (bfloat16 on AMX: 58 tokens/s, 85 on 2 threads)
        priority=3,
        heavy=True,
        env="generate",
        tests=(
            "tests/synth/test_engine.py",
            "tests/synth/test_sections.py",
            "tests/synth/test_pool.py",
            "tests/synth/test_layout.py",
            "tests/faults/test_kill_points.py",
            "tests/faults/test_flaky_endpoint.py",
        ),
    ),
    Stage(
        name="synth_docs",
        doc="Generate synthetic documents with one generator (Active Reading, Focal Rewriting, WRAP, EntiGraph).",
        axes=("benchmark", "generator"),
        # Every generator reads the QA stream (Focal Rewriting needs its questions): one declaration for all.
        inputs={"model": GENERATOR, "documents": DOCUMENTS, "qa": QA, **target_input("{generator}")},
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
            "roles.generator",
            *GENERATION_KEYS,
            "synth_docs.temperature",
            "synth_docs.top_p",
            "synth_docs.max_new_tokens",
            "synth_docs.generators.{generator}",
        ),
        entry=("smt/synth/generators/{generator}.py",),
        resources={"mem_mb": 4000, "runtime": 240, "gpu": 0},
        threads=1,  # the generators side by side
        priority=3,
        heavy=True,
        env="generate",
        tests=(
            "tests/synth/test_engine.py",
            "tests/synth/test_sections.py",
            "tests/synth/test_pool.py",
            "tests/synth/test_layout.py",
        ),
    ),
    Stage(
        name="synth_contamination",
        doc="Check synthetic texts for n-gram overlap with the benchmark's questions and options; fail above a limit.",
        axes=("benchmark",),
        inputs={"qa": QA, "docs": DOCS, "questions": QUESTIONS, "documents": DOCUMENTS},
        outputs={"report": _out(CONTAMINATION, kind="meta")},
        params=("audit.ngram", "audit.max_contamination"),
        resources={"mem_mb": 2000, "runtime": 30, "gpu": 0},
        tests=("tests/synth/test_audit.py",),
    ),
    Stage(
        name="synth_audit",
        doc="Measure the synthetic data: tokens per stream and generator, lexical and semantic (Vendi) diversity.",
        axes=("benchmark",),
        inputs={"model": STUDENT, "qa": QA, "docs": DOCS, **external_inputs("audit.embedding_model")},
        outputs={"report": _out(AUDIT, kind="meta")},
        params=("seed", "roles.student", "audit.embedding_model", "audit.max_items_per_generator"),
        resources={"mem_mb": 2000, "runtime": 60, "gpu": 0},
        threads=1,
        heavy=True,
        env="evaluate",
        tests=("tests/synth/test_audit.py",),
    ),
    Stage(
        name="mix",
        doc="Mix a recipe's synthetic streams to a token budget by their shares, plus replay text.",
        axes=("benchmark", "recipe", "budget"),
        inputs={
            "model": STUDENT,  # tokens are counted with the student's tokenizer
            "streams": RECIPE_STREAMS,
            "replay": "${mix.replay_corpus}",
            "manifests": RECIPE_MANIFESTS,  # generated tokens and generator models, for C = 2MD + 6ND
            # its streams pass the contamination check against the questions before they are mixed
            "questions": QUESTIONS,
            "documents": DOCUMENTS,
        },
        outputs={
            "train": _out(MIX),
            "report": _out(MIX_REPORT, kind="meta"),
        },
        params=(
            "seed",
            "roles.student",
            "recipes.{recipe}",
            "mix.replay_fraction",
            "mix.replay_corpus",
            "mix.max_repeat_fraction",
            "audit.ngram",
            "audit.max_contamination",
        ),
        resources={"mem_mb": 2000, "runtime": 10, "gpu": 0},
        priority=2,
        tests=("tests/train/test_mixing.py",),
    ),
    Stage(
        name="train",
        doc="Continued training of the student on the mix with TRL SFTTrainer.",
        axes=("benchmark", "recipe", "budget"),
        inputs={"model": STUDENT, "train": MIX, "mix_report": MIX_REPORT},
        outputs={
            "model": _out(SMT_MODEL, directory=True),
            "loss": _out("results/train/{benchmark}/{recipe}/{budget}/loss.csv", kind="plot", plot=LOSS_PLOT),
            "metrics": _out(TRAIN_METRICS, kind="meta"),
        },
        params=("seed", "roles.student", *(f"train.{key}" for key in HYPERPARAMETERS)),
        resources={"mem_mb": 8000, "runtime": 240, "gpu": 0},
        threads=1,
        priority=2,
        heavy=True,
        env="train",
        tests=("tests/train/test_sft.py", "tests/train/test_flops.py", "tests/train/test_compute.py"),
    ),
    Stage(
        name="rag_index",
        doc="Chunk the documents and build BM25 (rank-bm25) and dense (faiss) indexes.",
        axes=("benchmark",),
        inputs={"documents": DOCUMENTS, **external_inputs("rag.embedding_model")},
        outputs={"index": _out(INDEX, directory=True)},
        params=(
            "rag.chunk_unit",
            "rag.chunk_size",
            "rag.chunk_overlap",
            "rag.prepend_metadata",
            "rag.embedding_model",
            "rag.embedding_document_prompt",
            "rag.embedding_batch_size",
            "rag.dtype",
        ),
        resources={"mem_mb": 2000, "runtime": 30, "gpu": 0},
        threads=1,
        heavy=True,
        env="evaluate",
        tests=(
            "tests/rag/test_retrieval.py",
            "tests/rag/test_embedding.py",
            "tests/pipeline/test_builds.py",
            "tests/faults/test_kill_points.py",
        ),
    ),
    Stage(
        name="retrieve",
        doc="Retrieve (and optionally rerank) the chunks for every question once, for both RAG conditions.",
        axes=("benchmark",),
        inputs={
            "index": INDEX,
            "questions": QUESTIONS,
            "documents": DOCUMENTS,
            "model": STUDENT,  # the LLM reranker (rag.reranker: llm)
            **external_inputs("rag.embedding_model", "rag.reranker_model"),
        },
        outputs={
            "hits": _out(HITS),
            "report": _out(RETRIEVAL_REPORT, kind="meta"),
        },
        params=(
            "roles.student",
            STUDENT_CHAT,  # the llm reranker applies the student's chat template
            "rag.embedding_model",
            "rag.embedding_query_prompt",
            "rag.embedding_batch_size",
            "rag.dtype",
            "rag.query_options",
            "rag.retriever",
            "rag.top_k_retrieve",
            "rag.top_k",
            "rag.reranker",
            "rag.reranker_model",
            "rag.reranker_instruction",
            "rag.reranker_batch_size",
            "rag.reranker_chat_template_kwargs",
            "rag.context_order",
        ),
        resources={"mem_mb": 4000, "runtime": 30, "gpu": 0},
        threads=1,
        heavy=True,
        env="evaluate",
        tests=("tests/rag/test_retrieval.py", "tests/rag/test_rerank.py", "tests/pipeline/test_builds.py"),
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
            "mix_reports": MIX_REPORT,
        },
        outputs={
            "points": _out("results/scaling/{benchmark}/points.csv", kind="plot", plot=SCALING_PLOT),
            "fit": _out(SCALING_FIT, kind="meta"),
            "figure": _out("results/scaling/{benchmark}/scaling.png", kind="plot"),
        },
        params=(),
        resources={"mem_mb": 1000, "runtime": 5, "gpu": 0},
        tests=("tests/eval/test_scoring.py", "tests/pipeline/test_rebuild.py"),
    ),
    Stage(
        name="report",
        doc="The results page: scores with intervals, scaling figures and compute, as markdown and HTML.",
        axes=(),
        inputs={
            **{f"scores_{c}": score_path(c) for c in CONDITIONS},
            "scaling_fits": SCALING_FIT,
            "scaling_figures": "results/scaling/{benchmark}/scaling.png",
            "train_metrics": TRAIN_METRICS,
            "mix_reports": MIX_REPORT,
            "qa_manifests": "results/synth/{benchmark}/qa.manifest.json",
            "docs_manifests": "results/synth/{benchmark}/docs/{generator}.manifest.json",
            "generator": GENERATOR,  # its parameter count: M in 2MD
        },
        outputs={
            "report": _out("results/report.md"),
            "html": _out("results/report.html"),
            "compute": _out(COMPUTE, kind="meta"),
        },
        params=("report.decimals", "roles.generator"),
        resources={"mem_mb": 500, "runtime": 5, "gpu": 0},
        tests=("tests/eval/test_report.py", "tests/pipeline/test_builds.py", "tests/pipeline/test_rebuild.py"),
    ),
    Stage(
        name="metrics",
        doc="The numbers compared across runs (scores with intervals, losses, tokens, recall, diversity, compute), "
        "flat and few: the DVC metrics file that `dvc exp show` lists.",
        axes=(),
        inputs={
            **{f"scores_{c}": score_path(c) for c in CONDITIONS},
            "ingest_reports": INGEST_REPORT,
            "retrieval_reports": RETRIEVAL_REPORT,
            "contamination": CONTAMINATION,
            "audits": AUDIT,
            "mix_reports": MIX_REPORT,
            "train_metrics": TRAIN_METRICS,
            "scaling_fits": SCALING_FIT,
            "compute": COMPUTE,
        },
        outputs={"metrics": _out(METRICS, kind="metric")},
        params=(),
        resources={"mem_mb": 500, "runtime": 5, "gpu": 0},
        tests=("tests/eval/test_summary.py", "tests/pipeline/test_experiments.py"),
    ),
)


BY_NAME: dict[str, Stage] = {s.name: s for s in STAGES}


def stage(name: str) -> Stage:
    if name not in BY_NAME:
        raise KeyError(f"unknown stage '{name}'; stages: {sorted(BY_NAME)}")
    return BY_NAME[name]
