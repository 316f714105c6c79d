"""Benchmark loaders: published formats into normalized tables; malformed input names file, record and field.

QuALITY (L-Eval subset) and FinanceBench run on the real files in ../shared/data; QuALITY's official format and
LongHealth run on fixtures written for smt in those formats (tests/fixtures).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from smt import benchmarks as B
from smt.benchmarks import tables as T
from smt.benchmarks.loaders import quality
from smt.stages import ingest

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = ROOT / "tests" / "fixtures"
SHARED = ROOT.parent / "shared" / "data"
DEMO = {"source": str(ROOT / "smt" / "benchmarks" / "demo")}
QUALITY_OPTIONS = {"format": "official", "split": "all", "include_leval_added": False}
needs_shared = pytest.mark.skipif(not SHARED.is_dir(), reason=f"shared benchmark data not found at {SHARED}")


def quality_official(source: Path, **options: Any) -> T.Loaded:
    return B.load("quality", {**QUALITY_OPTIONS, "source": str(source), **options})


def copy_fixture(name: str, tmp_path: Path) -> Path:
    return Path(shutil.copytree(FIXTURES / name, tmp_path / name))


def rewrite_lines(path: Path, change: Any) -> None:
    """Apply change(record, index) to every JSON line of a file."""
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    path.write_text("".join(json.dumps(change(r, i) or r) + "\n" for i, r in enumerate(rows)))


# ------------------------------------------------------------------------------------------------------ demo


def test_demo_benchmark_is_complete() -> None:
    docs, questions = T.to_frames(B.load("demo", DEMO))
    assert (docs.height, questions.height) == (5, 80)
    assert set(questions["answer"]) == {"A", "B", "C", "D"}
    assert questions["options"].list.len().unique().to_list() == [4]
    assert set(questions["doc_id"]) <= set(docs["doc_id"])


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"answer": "E"}, r"record 2: field 'answer': 'E' is not one of \['A', 'B', 'C', 'D'\]"),
        ({"doc_id": "nope"}, r"record 2: field 'doc_id': 'nope' names no document"),
        ({"question": ""}, r"record 2: field 'question': is empty"),
        ({"question_id": "demo-01-q1"}, r"record 2: field 'question_id': duplicate question_id 'demo-01-q1'"),
        ({"options": "abcd"}, r"record 2: field 'options': expected list, got str"),
    ],
)
def test_bad_demo_question_is_named(tmp_path: Path, change: dict, message: str) -> None:
    source = Path(shutil.copytree(DEMO["source"], tmp_path / "demo"))
    rewrite_lines(source / "questions.jsonl", lambda r, i: {**r, **change} if i == 1 else r)
    with pytest.raises(T.BenchmarkInputError, match=rf"{source / 'questions.jsonl'}: {message}"):
        B.load("demo", {"source": str(source)})


def test_truncated_json_names_the_line(tmp_path: Path) -> None:
    source = Path(shutil.copytree(DEMO["source"], tmp_path / "demo"))
    path = source / "documents.jsonl"
    path.write_text(path.read_text()[:-200])
    with pytest.raises(ValueError, match=rf"{path}: record line 5: not valid JSON"):
        B.load("demo", {"source": str(source)})


def test_missing_source_folder_says_how_to_fetch_it(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"benchmarks.quality.source: .* `python -m smt download quality`"):
        quality_official(tmp_path / "nowhere")


# -------------------------------------------------------------------------------------- QuALITY (official)


def test_quality_official_pools_train_and_dev_and_merges_question_sets() -> None:
    loaded = quality_official(FIXTURES / "quality_official")
    docs, questions = T.to_frames(loaded)
    # 8 lines (2 question sets per article) -> 4 articles; the unlabelled test split is not read.
    assert docs.height == 4 and questions.height == 18
    assert sorted(docs["doc_id"]) == ["90001", "90002", "90003", "90004"]
    assert questions["difficult"].sum() == 6
    assert set(questions["split"]) == {"train", "dev"}
    assert all(q["question_id"].startswith(q["doc_id"] + "_") for q in questions.iter_rows(named=True))
    train = FIXTURES / "quality_official" / "QuALITY.v1.0.1.htmlstripped.train"
    first = json.loads(train.read_text().splitlines()[0])
    row = questions.filter(questions["question_id"] == f"{first['set_unique_id']}_1").row(0, named=True)
    assert row["question"] == first["questions"][0]["question"]
    assert row["answer_index"] == first["questions"][0]["gold_label"] - 1
    assert row["answer"] == "ABCD"[row["answer_index"]]
    doc = docs.filter(docs["doc_id"] == first["article_id"]).row(0, named=True)
    assert (doc["title"], doc["author"], doc["year"], doc["origin"]) == (
        first["title"], first["author"], first["year"], first["source"],
    )  # fmt: skip


def test_quality_dedups_articles_by_title_and_author_across_splits(tmp_path: Path) -> None:
    source = copy_fixture("quality_official", tmp_path)
    train = json.loads((source / "QuALITY.v1.0.1.htmlstripped.train").read_text().splitlines()[0])
    # Give the first dev article the title and author of the first train article: one article, all questions.
    dev = source / "QuALITY.v1.0.1.htmlstripped.dev"
    first_dev_id = json.loads(dev.read_text().splitlines()[0])["article_id"]
    same = {"title": train["title"], "author": train["author"]}
    rewrite_lines(dev, lambda r, i: {**r, **same} if r["article_id"] == first_dev_id else r)
    loaded = quality_official(source)
    docs, questions = T.to_frames(loaded)
    assert docs.height == 3 and questions.height == 18
    assert first_dev_id not in set(questions["doc_id"])
    assert loaded.excluded == {"article_text_variant_ignored": 2}


def _articles(n: int) -> list[dict[str, Any]]:
    return [T.document(f"a{i}", "text", title=f"Title {i:02d}") for i in reversed(range(n))]


@pytest.mark.parametrize(("split", "expected"), [("entigraph_validation", ["a0", "a1"]), ("entigraph_test", None)])
def test_entigraph_split_sorts_by_title_first_fifth_is_validation(split: str, expected: list[str] | None) -> None:
    docs = _articles(10)
    questions = [T.multiple_choice(f"q{d['doc_id']}", d["doc_id"], "Q?", ["a", "b"], 0, "dev") for d in docs]
    loaded = quality.entigraph_split(T.Loaded(docs, questions), split)
    ids = sorted(d["doc_id"] for d in loaded.documents)
    assert ids == (expected or [f"a{i}" for i in range(2, 10)])
    assert sorted(q["doc_id"] for q in loaded.questions) == ids
    assert loaded.excluded == {f"outside_{split}_documents": 10 - len(ids), f"outside_{split}_questions": 10 - len(ids)}


@pytest.mark.parametrize(
    ("change", "field", "message"),
    [
        (lambda q: q.update(gold_label=5), "gold_label", "5 is out of range 1..4"),
        (lambda q: q.update(options=q["options"][:3]), "options", "expected 4 strings"),
        (lambda q: q.pop("question"), "question", "missing"),
        (lambda q: q.update(difficult="yes"), "difficult", "expected 0 or 1"),
    ],
)
def test_quality_bad_question_is_named(tmp_path: Path, change: Any, field: str, message: str) -> None:
    source = copy_fixture("quality_official", tmp_path)
    dev = source / "QuALITY.v1.0.1.htmlstripped.dev"

    def corrupt(record: dict, index: int) -> dict:
        if index == 2:
            change(record["questions"][1])
        return record

    rewrite_lines(dev, corrupt)
    with pytest.raises(T.BenchmarkInputError, match=rf"{dev}: record line 3 question 2: field '{field}': {message}"):
        quality_official(source)


def test_quality_truncated_line_is_named(tmp_path: Path) -> None:
    source = copy_fixture("quality_official", tmp_path)
    train = source / "QuALITY.v1.0.1.htmlstripped.train"
    lines = train.read_text().splitlines()
    train.write_text("\n".join([*lines[:2], lines[2][:500]]) + "\n")
    with pytest.raises(T.BenchmarkInputError, match=rf"{train}: record line 3: not valid JSON"):
        quality_official(source)


# ---------------------------------------------------------------------------------------- QuALITY (L-Eval)


@needs_shared
def test_quality_leval_subset_excludes_leval_questions() -> None:
    loaded = quality_official(SHARED / "quality", format="leval")
    docs, questions = T.to_frames(loaded)
    assert docs.height == 5 and questions.height == 64
    assert loaded.excluded == {"leval_added_question": 9}
    assert set(docs["title"]) == {
        "Doorway to Kal-Jmar", "The Reluctant Heroes", "DANGEROUS QUARRY", "HAGERTY'S ENZYMES", "MUCK MAN",
    }  # fmt: skip
    assert docs.filter(docs["title"] == "DANGEROUS QUARRY")["author"].item() == "JIM HARMON"
    syme = questions.filter(questions["question"] == "Why did Syme accept the mission with Tate?").row(0, named=True)
    assert syme["answer"] == "B" and syme["options"][1] == "He felt he would collect a reward along the way"
    assert questions["options"].list.len().unique().to_list() == [4]
    with_added = quality_official(SHARED / "quality", format="leval", include_leval_added=True)
    assert len(with_added.questions) == 73 and with_added.excluded == {}
    # Ids come from the article text, so they are the same whichever lines a file holds.
    assert {q["question_id"] for q in loaded.questions} < {q["question_id"] for q in with_added.questions}


@needs_shared
def test_quality_leval_answer_without_letter_is_named(tmp_path: Path) -> None:
    source = tmp_path / "quality"
    source.mkdir()
    path = source / "quality.jsonl"
    path.write_text((SHARED / "quality" / "quality.jsonl").read_text())
    rewrite_lines(path, lambda r, i: {**r, "outputs": ["B) no parenthesis", *r["outputs"][1:]]} if i == 1 else r)
    with pytest.raises(T.BenchmarkInputError, match=rf"{path}: record line 2 question 1: field 'outputs': no leading"):
        quality_official(source, format="leval")


# ------------------------------------------------------------------------------------------------ LongHealth


def test_longhealth_patients_become_documents_with_text_segments() -> None:
    raw = json.loads((FIXTURES / "longhealth" / "benchmark_v5.json").read_text())
    docs, questions = T.to_frames(B.load("longhealth", {"source": str(FIXTURES / "longhealth")}))
    assert docs.height == 2 and questions.height == 6
    for doc in docs.iter_rows(named=True):
        texts = raw[doc["doc_id"]]["texts"]
        assert [s["name"] for s in doc["segments"]] == list(texts)
        for seg in doc["segments"]:
            assert doc["text"][seg["start"] : seg["end"]] == texts[seg["name"]]
    for q in questions.iter_rows(named=True):
        patient, number = q["doc_id"], int(q["question_id"].rsplit("_q", 1)[1])
        published = next(p for p in raw[patient]["questions"] if int(p["No"]) == number)
        assert q["options"][q["answer_index"]] == published["correct"].strip()
        assert [e["segment"] for e in q["evidence"]] == list(published["answer_location"])
    assert questions["answer"].to_list() == ["B", "E", "C", "A", "D", "B"]


@pytest.mark.parametrize(
    ("change", "field", "message"),
    [
        (lambda q: q.update(correct="none of these"), "correct", "'none of these' matches no option"),
        (lambda q: q.update(answer_b=q["answer_a"], correct=q["answer_a"]), "correct", "matches 2 options"),
        (lambda q: q.update(answer_location={"text_9": {"start": [0.1], "end": [0.2]}}), "answer_location", "text_9"),
        (lambda q: q.pop("answer_e"), "answer_e", "missing"),
    ],
)
def test_longhealth_bad_question_is_named(tmp_path: Path, change: Any, field: str, message: str) -> None:
    source = copy_fixture("longhealth", tmp_path)
    path = source / "benchmark_v5.json"
    data = json.loads(path.read_text())
    change(data["patient_02"]["questions"][1])
    path.write_text(json.dumps(data))
    where = "record patient_02 question 2"
    with pytest.raises(T.BenchmarkInputError, match=rf"{path}: {where}: field '{field}': .*{message}"):
        B.load("longhealth", {"source": str(source)})


def test_longhealth_truncated_file_is_named(tmp_path: Path) -> None:
    source = copy_fixture("longhealth", tmp_path)
    path = source / "benchmark_v5.json"
    path.write_text(path.read_text()[:1000])
    with pytest.raises(T.BenchmarkInputError, match=rf"{path}: record <file>: not valid JSON"):
        B.load("longhealth", {"source": str(source)})


# --------------------------------------------------------------------------------------------- the ingest stage


def test_max_documents_keeps_questions_of_kept_documents_and_counts_the_rest() -> None:
    loaded = ingest.limit_documents(B.load("demo", DEMO), 2)
    assert sorted(d["doc_id"] for d in loaded.documents) == ["demo-01", "demo-02"]
    assert {q["doc_id"] for q in loaded.questions} == {"demo-01", "demo-02"}
    assert loaded.excluded == {"beyond_max_documents_documents": 3, "beyond_max_documents_questions": 48}


# ---------------------------------------------------------------------------------------------- FinanceBench

FB = SHARED / "financebench"
SMALL_PDFS = (
    "ULTABEAUTY_2023Q4_EARNINGS",
    "PEPSICO_2023_8K_dated-2023-05-05",
    "FOOTLOCKER_2022_8K_dated-2022-05-20",
    "AMCOR_2022_8K_dated-2022-07-01",
    "AMCOR_2023Q4_EARNINGS",
    "FOOTLOCKER_2022_8K_dated_2022-08-19",
    "BESTBUY_2024Q2_10Q",
)
# PDFs the shared sample lacks (its README), with the number of questions about each.
ABSENT = {
    "3M_2023Q2_10Q": 3, "AES_2022_10K": 3, "AMCOR_2020_10K": 1, "AMD_2022_10K": 7, "COCACOLA_2021_10K": 1,
    "COCACOLA_2022_10K": 1, "JPMORGAN_2022_10K": 1, "PAYPAL_2022_10K": 1, "ULTABEAUTY_2023_10K": 2,
    "WALMART_2019_10K": 1,
}  # fmt: skip


def financebench_subset(tmp_path: Path, pdfs: tuple[str, ...] = SMALL_PDFS) -> Path:
    """The real questions and metadata with a few of the real PDFs (linked, not copied)."""
    source = tmp_path / "financebench"
    (source / "pdfs").mkdir(parents=True)
    for name in ("financebench_open_source.jsonl", "financebench_document_information.jsonl"):
        (source / name).symlink_to(FB / name)
    for name in pdfs:
        (source / "pdfs" / f"{name}.pdf").symlink_to(FB / "pdfs" / f"{name}.pdf")
    return source


def _words(text: str) -> list[str]:
    return "".join(c.lower() if c.isalnum() else " " for c in text).split()


@needs_shared
def test_financebench_keeps_every_question_and_finds_evidence_on_its_page(tmp_path: Path) -> None:
    loaded = B.load("financebench", {"source": str(financebench_subset(tmp_path)), "corpus": "all"}, workers=2)
    docs, questions = T.to_frames(loaded)
    assert questions.height == 140 and set(questions["kind"]) == {T.FREE_FORM}
    assert sorted(docs["doc_id"]) == sorted(SMALL_PDFS)
    ok = questions.filter(questions["status"] == T.OK)
    assert set(ok["doc_id"]) == set(SMALL_PDFS)
    missing = questions.filter(questions["status"] == T.MISSING_DOCUMENT)
    assert ok.height + missing.height == 140 and loaded.excluded == {"questions_missing_document": missing.height}
    assert all(len(loaded.notes["missing_documents"][doc]) == n for doc, n in ABSENT.items())
    assert loaded.notes["pdf_library"].startswith("pypdfium2 ")
    assert loaded.notes["duplicate_metadata_rows"] == ["FOOTLOCKER_2023_annualreport"]
    # Every evidence snippet is on the page the benchmark names, and that page matches it best.
    by_id = {d["doc_id"]: d for d in docs.iter_rows(named=True)}
    checked = 0
    for q in ok.iter_rows(named=True):
        for ev in q["evidence"]:
            doc = by_id[ev["doc_id"]]
            pages = [set(_words(doc["text"][s["start"] : s["end"]])) for s in doc["segments"]]
            snippet = set(_words(ev["text"]))
            recall = [len(snippet & page) / len(snippet) for page in pages]
            page = int(ev["segment"].removeprefix("page_"))
            assert recall[page] >= 0.9 and recall[page] == max(recall), (q["question_id"], page, recall[page])
            checked += 1
    assert checked == 13  # evidence items of the questions about these PDFs


@needs_shared
def test_financebench_referenced_corpus_and_missing_question_ids(tmp_path: Path) -> None:
    source = financebench_subset(tmp_path, SMALL_PDFS[:2])
    (source / "pdfs" / "3M_2015_10K.pdf").symlink_to(FB / "pdfs" / "ULTABEAUTY_2023Q4_EARNINGS.pdf")  # no question
    everything = B.load("financebench", {"source": str(source), "corpus": "all"})
    referenced = B.load("financebench", {"source": str(source), "corpus": "referenced"})
    assert {d["doc_id"] for d in everything.documents} == {*SMALL_PDFS[:2], "3M_2015_10K"}
    assert {d["doc_id"] for d in referenced.documents} == set(SMALL_PDFS[:2])
    for doc, n in ABSENT.items():
        ids = referenced.notes["missing_documents"][doc]
        assert len(ids) == n and all(i.startswith("financebench_id_") for i in ids)


@needs_shared
def test_unreadable_pdf_is_named(tmp_path: Path) -> None:
    source = financebench_subset(tmp_path, SMALL_PDFS[:1])
    broken = source / "pdfs" / "3M_2018_10K.pdf"
    broken.write_bytes((FB / "pdfs" / "3M_2018_10K.pdf").read_bytes()[:5000])
    with pytest.raises(T.BenchmarkInputError, match=rf"{broken}: record <file>: unreadable PDF"):
        B.load("financebench", {"source": str(source), "corpus": "all"})


@needs_shared
def test_financebench_bad_question_is_named(tmp_path: Path) -> None:
    source = financebench_subset(tmp_path, ())
    path = source / "financebench_open_source.jsonl"
    path.unlink()
    path.write_text((FB / path.name).read_text())

    def corrupt(record: dict, index: int) -> dict:
        if index == 6:
            record["evidence"][0]["evidence_page_num"] = "59"
        return record

    rewrite_lines(path, corrupt)
    expected = "record line 7 evidence 1: field 'evidence_page_num': expected int, got str"
    with pytest.raises(T.BenchmarkInputError, match=rf"{path}: {expected}"):
        B.load("financebench", {"source": str(source), "corpus": "all"})
