"""The ingest stage for several benchmarks at once, under Snakemake and DVC (no model needed).

QuALITY comes from the real L-Eval subset in ../shared/data (an external folder, as a user's local copy
would be) and LongHealth from the fixture, both named in params.yaml next to the demo benchmark.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from helpers import SHARED_DATA, dvc_status, make_workspace, sh, snakemake_pending

pytestmark = pytest.mark.skipif(not SHARED_DATA.is_dir(), reason=f"shared benchmark data not found at {SHARED_DATA}")

BENCHMARKS = {
    "benchmarks": {
        "demo": {"source": "smt/benchmarks/demo"},
        "quality": {
            "source": str(SHARED_DATA / "quality"),
            "format": "leval",
            "split": "all",
            "include_leval_added": False,
        },
        "longhealth": {"source": "tests/fixtures/longhealth"},
    }
}
INGEST_OUTPUTS = [f"results/data/{b}/{f}" for b in BENCHMARKS["benchmarks"] for f in ("questions.parquet",)]


@pytest.fixture(scope="module")
def ingested(tmp_path_factory: pytest.TempPathFactory) -> Path:
    ws = make_workspace(tmp_path_factory.mktemp("bench"), BENCHMARKS)
    sh(["snakemake", "--cores", "2", *INGEST_OUTPUTS], ws)
    return ws


def report(ws: Path, benchmark: str) -> dict:
    return json.loads((ws / f"results/data/{benchmark}/ingest_report.json").read_text())


def test_every_benchmark_is_ingested_with_its_report(ingested: Path) -> None:
    quality = report(ingested, "quality")
    assert (quality["documents"], quality["questions"]) == (5, 64)
    assert quality["excluded"] == {"leval_added_question": 9}
    assert quality["questions_by_kind"] == {"multiple_choice": 64}
    assert quality["tokens_per_document"]["min"] > 2000
    longhealth = report(ingested, "longhealth")
    assert (longhealth["documents"], longhealth["questions"]) == (2, 6)
    details = json.loads((ingested / "results/data/quality/ingest_details.json").read_text())
    assert details["format"] == "L-Eval quality.jsonl"
    assert details["provenance"]["params"]["benchmarks.quality"]["format"] == "leval"


def test_one_benchmarks_options_and_files_rerun_only_its_ingest(ingested: Path) -> None:
    sh("dvc commit --force ingest", ingested)
    ingest_ids = {"ingest@demo", "ingest@quality", "ingest@longhealth"}
    assert snakemake_pending(ingested) & ingest_ids == set()
    assert dvc_status(ingested) & ingest_ids == set()
    fixture = ingested / "tests/fixtures/longhealth/benchmark_v5.json"
    original, stat = fixture.read_bytes(), fixture.stat()
    fixture.write_bytes(original + b"\n")
    try:
        assert snakemake_pending(ingested) & ingest_ids == {"ingest@longhealth"}
        assert dvc_status(ingested) & ingest_ids == {"ingest@longhealth"}
    finally:
        fixture.write_bytes(original)
        os.utime(fixture, (stat.st_atime, stat.st_mtime))
    params = (ingested / "params.yaml").read_text()
    (ingested / "params.yaml").write_text(params.replace("include_leval_added: false", "include_leval_added: true"))
    try:
        assert snakemake_pending(ingested) & ingest_ids == {"ingest@quality"}
        assert dvc_status(ingested) & ingest_ids == {"ingest@quality"}
    finally:
        (ingested / "params.yaml").write_text(params)
    assert snakemake_pending(ingested) & ingest_ids == set()


def test_a_benchmark_in_data_raw_is_downloaded_first(tmp_path: Path) -> None:
    ws = make_workspace(tmp_path, {"benchmarks": {"longhealth": {"source": "data/raw/longhealth"}}})
    out = sh("snakemake -n --cores 2 results/data/longhealth/questions.parquet", ws).stdout
    assert "python -m smt download longhealth --dest data/raw/longhealth" in out
    assert "python -m smt ingest --benchmark longhealth" in out
