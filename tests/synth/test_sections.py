"""Long documents: a FinanceBench filing split into sections of whole pages that fit the generator's context,
every record naming its section, and a request still too long for the model rejected with the reason while its
shard completes."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from helpers import SHARED_DATA, tiny_llama

from smt import io
from smt.artifacts import model_identity
from smt.benchmarks import pdf
from smt.benchmarks.loaders import financebench
from smt.synth import sections
from smt.synth.engine import Engine, Plan
from smt.synth.generation import BackendSettings
from smt.synth.generators import qa
from smt.synth.job import Job

FILING = "NIKE_2023_10K"  # 106 pages, about 90K tokens


@pytest.fixture(scope="module")
def tokenizer(base_model: Path):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(base_model)


@pytest.mark.skipif(not (SHARED_DATA / "financebench").is_dir(), reason=f"shared data not found at {SHARED_DATA}")
def test_a_financebench_filing_is_split_into_sections_of_whole_pages(tokenizer, base_model: Path) -> None:
    folder = SHARED_DATA / "financebench"
    metadata, _ = financebench.read_metadata(folder / "financebench_document_information.jsonl")
    doc = financebench.filing_document(FILING, metadata[FILING], pdf.pages(folder / "pdfs" / f"{FILING}.pdf"))
    context = sections.context_length(str(base_model))
    size = sections.section_budget(0, context, 2048)  # the paper's QA max_new_tokens
    assert size == context - 2048 - sections.PROMPT_MARGIN
    assert len(tokenizer(doc["text"])["input_ids"]) > 10 * context  # far too long for one request
    units = sections.split([doc], tokenizer, size, "segments")
    assert len(units) > 10 and [u["section"] for u in sorted(units, key=lambda u: u["section"])] == list(
        range(len(units))
    )
    pages = [s for s in doc["segments"] if doc["text"][s["start"] : s["end"]].strip()]
    covered = []
    for unit in sorted(units, key=lambda u: u["section"]):
        assert unit["doc_id"] == f"{FILING}#s{unit['section']}" and unit["source_doc_id"] == FILING
        assert len(tokenizer(unit["text"], add_special_tokens=False)["input_ids"]) <= size + 1
        first, _, last = unit["section_name"].partition("..")
        names = [p["name"] for p in doc["segments"]]
        span = names[names.index(first) : names.index(last or first) + 1]
        covered += span
        for page in (p for p in pages if p["name"] in span):  # whole pages, as the filing has them
            assert doc["text"][page["start"] : page["end"]].strip() in unit["text"]
    assert [p["name"] for p in pages] == [n for n in covered if n in {p["name"] for p in pages}]
    windows = sections.split([doc], tokenizer, size, "tokens")
    assert all(u["section_name"].startswith("tokens ") for u in windows)
    assert all(len(tokenizer(u["text"], add_special_tokens=False)["input_ids"]) <= size + 1 for u in windows)
    short = {**doc, "doc_id": "short", "text": doc["text"][:2000], "segments": doc["segments"][:1]}
    (whole,) = sections.split([short], tokenizer, size, "segments")
    assert whole["doc_id"] == "short" and whole["section_name"] == sections.WHOLE


def _engine(tmp: Path, model: Path, units: list[dict], max_new_tokens: int) -> Engine:
    job = Job(documents=[], seed=1, options={"per_request": 1, "per_document": 1}, temperature=1.0, top_p=1.0,
              max_new_tokens=max_new_tokens)  # fmt: skip
    plan = Plan(
        stage="synth_qa", axes={"benchmark": "t"}, label="synth_qa@t", documents=units, count=2, job=job,
        settings=BackendSettings("transformers", str(model), "float32", 4), model=model_identity(model), code={},
        fingerprint="f", journal=str(tmp / "journal"), records=str(tmp / "qa.jsonl"),
        manifest=str(tmp / "qa.manifest.json"), provenance={}, log=logging.getLogger("test"),
        shard_outputs=lambda i: {"records": str(tmp / f"shards/{i}.jsonl"), "manifest": str(tmp / f"shards/{i}.json")},
    )  # fmt: skip
    return Engine(plan, qa.produce)


def test_sections_are_recorded_and_a_request_too_long_is_rejected_not_the_shard(tmp_path: Path, tokenizer) -> None:
    model = tiny_llama(tmp_path / "tiny", tokenizer.name_or_path)  # a 256-token context
    pages = [
        "The lighthouse keeper counted nine ships in March. " * 3,
        "In April the harbour froze for a week. " * 3,
        "By May the gulls were back on the north cliffs. " * 3,
        "In June a ship ran aground on the bar. " * 3,
    ]  # each page fits a 40-token section; the four together do not fit the model beside the prompt
    text = "\n\n".join(pages)
    starts = [sum(len(p) + 2 for p in pages[:i]) for i in range(len(pages))]
    paged = {"doc_id": "paged", "title": "Harbour Log", "text": text, "segments": [
        {"name": f"page_{i}", "start": start, "end": start + len(page)}
        for i, (start, page) in enumerate(zip(starts, pages, strict=True))
    ]}  # fmt: skip
    tiny = {"doc_id": "tiny", "title": "Gulls", "text": "Gulls nest on the cliffs.", "segments": []}
    units = sections.split([paged, tiny], tokenizer, 40, "segments")
    names = [f"page_{i}" for i in range(len(pages))]
    assert [u["section_name"] for u in units] == [*names, sections.WHOLE]
    _engine(tmp_path / "split", model, units, 4).run()
    records = io.read_jsonl(tmp_path / "split/qa.jsonl")
    manifest = io.read_json(tmp_path / "split/qa.manifest.json")
    made = records + manifest["rejected"]
    assert sorted((r["doc_id"], r["section_name"]) for r in made) == [
        *(("paged", name) for name in names), ("tiny", sections.WHOLE)
    ]  # fmt: skip
    assert not any("too long" in r["reason"] for r in manifest["rejected"])
    # Unsplit, the paged document's request does not fit 256 tokens: that item is rejected, naming why.
    whole = sections.split([paged, tiny], tokenizer, 0, "segments")
    _engine(tmp_path / "whole", model, whole, 4).run()
    manifest = io.read_json(tmp_path / "whole/qa.manifest.json")
    (refused,) = [r for r in manifest["rejected"] if r["doc_id"] == "paged"]
    assert refused["reason"].startswith("too long for the model: a prompt of ")
    assert "exceeds its context of 256 tokens" in refused["reason"]
    assert manifest["counts"]["requested"] == 2 and {r["doc_id"] for r in manifest["rejected"]} | {
        r["doc_id"] for r in io.read_jsonl(tmp_path / "whole/qa.jsonl")
    } == {"paged", "tiny"}
