"""Downloads: every file verified against its pinned git blob sha1; nothing half-downloaded looks complete.

No network here: the published files are served from ../shared/data and test folders through file:// URLs.
"""

from __future__ import annotations

import logging
import subprocess
from pathlib import Path

import pytest

from smt.benchmarks import sources as S

ROOT = Path(__file__).resolve().parents[2]
FB = ROOT.parent / "shared" / "data" / "financebench"
DOC_INFO = "financebench_document_information.jsonl"
needs_shared = pytest.mark.skipif(not FB.is_dir(), reason=f"shared benchmark data not found at {FB}")


def test_git_sha1_equals_git_hash_object(tmp_path: Path) -> None:
    path = tmp_path / "f.txt"
    path.write_bytes(b"some bytes\n" * 1000)
    expected = subprocess.run(["git", "hash-object", str(path)], capture_output=True, text=True, check=True).stdout
    assert S.git_sha1(path) == expected.strip()


def test_every_pin_is_well_formed() -> None:
    for benchmark in ("quality", "longhealth", "financebench"):
        for pin in S.pins(benchmark):
            assert pin.url.startswith("https://") and len(pin.git_sha1 or "") == 40
    assert len(S.catalog()["financebench"]["pdf_git_sha1"]) == 70


@needs_shared
def test_fetch_verifies_the_hash(tmp_path: Path) -> None:
    good = S.Pin(DOC_INFO, (FB / DOC_INFO).as_uri(), "decdfa948630f289d05cc0048417b3b9107cfb9f")
    assert S.fetch(good, tmp_path) == "fetched"
    assert (tmp_path / DOC_INFO).read_bytes() == (FB / DOC_INFO).read_bytes()
    assert S.fetch(good, tmp_path) == "kept"  # already verified: not fetched again


@needs_shared
def test_hash_mismatch_fails_and_leaves_nothing(tmp_path: Path) -> None:
    bad = S.Pin(DOC_INFO, (FB / DOC_INFO).as_uri(), "0" * 40)
    with pytest.raises(S.DownloadError, match=r"git blob sha1 decdfa94\w+ does not match the pinned 0000"):
        S.fetch(bad, tmp_path)
    assert list(tmp_path.iterdir()) == []


@needs_shared
def test_vendored_hash_mismatch_warns_with_the_observed_hash(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    pin = S.Pin(DOC_INFO, (FB / DOC_INFO).as_uri(), "1" * 40, on_mismatch="warn")
    with caplog.at_level(logging.WARNING, logger="smt.download"):
        assert S.fetch(pin, tmp_path) == "unverified"
    assert "decdfa948630f289d05cc0048417b3b9107cfb9f differs from the vendored 1111" in caplog.text


def test_unreachable_url_is_an_error(tmp_path: Path) -> None:
    pin = S.Pin("x.json", (tmp_path / "absent.json").as_uri(), "0" * 40)
    with pytest.raises(S.DownloadError, match=r"absent.json: download failed after 1 attempts"):
        S.fetch(pin, tmp_path / "out", retries=1)


@needs_shared
def test_financebench_pdf_pins_cover_the_referenced_filings() -> None:
    pins = S.financebench_pdf_pins(FB, all_documents=False)
    assert len(pins) == 80  # documents the 140 shared questions name
    assert sum(p.git_sha1 is not None for p in pins) == 70
    pin = next(p for p in pins if p.path == "pdfs/3M_2018_10K.pdf")
    assert pin.url.endswith("/cc39aeb4afdf33909ee1412188bf89035950c2eb/pdfs/3M_2018_10K.pdf")
    assert pin.git_sha1 == S.git_sha1(FB / "pdfs" / "3M_2018_10K.pdf")
    assert len(S.financebench_pdf_pins(FB, all_documents=True)) == 360  # 361 rows, one name twice


@needs_shared
def test_interrupted_download_never_looks_complete_and_resumes(tmp_path: Path) -> None:
    """A failed file stops the download before the target folder appears; the next attempt keeps the files
    already verified and fetches the rest."""
    dest = tmp_path / "financebench"
    good = {name: S.git_sha1(FB / name) for name in (DOC_INFO, "financebench_open_source.jsonl")}
    attempt = {"questions_hash": "0" * 40}

    def pins(benchmark: str) -> list[S.Pin]:
        return [
            S.Pin(DOC_INFO, "unused", good[DOC_INFO]),
            S.Pin("financebench_open_source.jsonl", "unused", attempt["questions_hash"]),
        ]

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(S, "pins", pins)
        mp.setattr(S, "financebench_pdf_pins", lambda folder, all_documents: [])
        with pytest.raises(S.DownloadError, match=r"financebench_open_source.jsonl: git blob sha1 8cc4cce4"):
            S.download("financebench", dest, base_url=FB.as_uri())
        assert not dest.exists()
        partial = tmp_path / "financebench.partial"
        assert sorted(p.name for p in partial.iterdir()) == [DOC_INFO]
        attempt["questions_hash"] = good["financebench_open_source.jsonl"]
        outcomes = S.download("financebench", dest, base_url=FB.as_uri())
    assert outcomes == {DOC_INFO: "kept", "financebench_open_source.jsonl": "fetched"}
    assert (dest / DOC_INFO).read_bytes() == (FB / DOC_INFO).read_bytes()
    assert not partial.exists()
    with pytest.raises(S.DownloadError, match="already exists"):
        S.download("financebench", dest, base_url=FB.as_uri())
