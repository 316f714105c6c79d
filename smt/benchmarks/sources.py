"""Download a benchmark's published files (smt/benchmarks/sources.yaml) and verify each against its hash.

Files land in `<dest>.partial/` and the folder is renamed to `<dest>` only when every file is verified, so an
interrupted download never looks complete; rerunning it keeps the files already verified and fetches the rest.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from tqdm import tqdm

SOURCES = Path(__file__).parent / "sources.yaml"
CHUNK = 1 << 20
log = logging.getLogger("smt.download")


class DownloadError(RuntimeError):
    """A file could not be fetched or does not match its pinned hash."""


@dataclass(frozen=True)
class Pin:
    path: str
    url: str
    git_sha1: str | None
    on_mismatch: str = "fail"  # fail | warn


def git_sha1(path: Path) -> str:
    """`git hash-object` of a file: sha1 over 'blob <size>\\0' and the content."""
    digest = hashlib.sha1(f"blob {path.stat().st_size}\0".encode())
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(CHUNK), b""):
            digest.update(block)
    return digest.hexdigest()


def catalog() -> dict[str, Any]:
    return yaml.safe_load(SOURCES.read_text())


def pins(benchmark: str) -> list[Pin]:
    """The fixed files of a benchmark (FinanceBench's PDFs are added once its questions file is known)."""
    entries = catalog()
    if benchmark not in entries:
        raise DownloadError(f"no published source for benchmark '{benchmark}'; downloadable: {sorted(entries)}")
    return [Pin(**f) for f in entries[benchmark]["files"]]


def financebench_pdf_pins(folder: Path, all_documents: bool) -> list[Pin]:
    """One pin per PDF the questions name (or, with all_documents, every document with metadata)."""
    entry = catalog()["financebench"]
    source = "financebench_document_information.jsonl" if all_documents else "financebench_open_source.jsonl"
    with (folder / source).open(encoding="utf-8") as fh:
        names = sorted({json.loads(line)["doc_name"] for line in fh if line.strip()})
    known = entry["pdf_git_sha1"]
    return [
        Pin(f"pdfs/{n}.pdf", entry["pdf_url"].format(doc_name=n), known.get(n), "fail" if n in known else "warn")
        for n in names
    ]


def fetch(pin: Pin, folder: Path, retries: int = 3) -> str:
    """Fetch one file into folder (kept if already verified); returns 'kept', 'fetched' or 'unverified'."""
    target = folder / pin.path
    if target.exists() and pin.git_sha1 and git_sha1(target) == pin.git_sha1:
        return "kept"
    target.parent.mkdir(parents=True, exist_ok=True)
    scratch = target.with_name(target.name + ".tmp")
    for attempt in range(1, retries + 1):
        try:
            with urllib.request.urlopen(pin.url, timeout=60) as response, scratch.open("wb") as fh:
                shutil.copyfileobj(response, fh, CHUNK)
            break
        except OSError as exc:
            if attempt == retries:
                scratch.unlink(missing_ok=True)
                raise DownloadError(f"{pin.url}: download failed after {retries} attempts ({exc})") from exc
            time.sleep(2**attempt)
    observed = git_sha1(scratch)
    if pin.git_sha1 and observed != pin.git_sha1:
        if pin.on_mismatch != "warn":
            scratch.unlink()
            raise DownloadError(f"{pin.url}: git blob sha1 {observed} does not match the pinned {pin.git_sha1}")
        log.warning("%s: git blob sha1 %s differs from the vendored %s; kept", pin.path, observed, pin.git_sha1)
    elif not pin.git_sha1:
        log.warning("%s: no pinned hash; observed git blob sha1 %s", pin.path, observed)
    os.replace(scratch, target)
    return "fetched" if pin.git_sha1 and observed == pin.git_sha1 else "unverified"


def download(benchmark: str, dest: Path, all_documents: bool = False, base_url: str | None = None) -> dict[str, str]:
    """Fetch and verify every published file of a benchmark into dest; returns path -> outcome."""
    if dest.exists():
        raise DownloadError(f"{dest} already exists; remove it to download again")
    partial = dest.with_name(dest.name + ".partial")
    partial.mkdir(parents=True, exist_ok=True)
    todo = pins(benchmark)
    outcomes: dict[str, str] = {}
    for stage in ("files", "pdfs"):
        if stage == "pdfs":
            if benchmark != "financebench":
                break
            todo = financebench_pdf_pins(partial, all_documents)
        for pin in tqdm(_rebased(todo, base_url), desc=f"downloading {benchmark} {stage}", unit="file"):
            outcomes[pin.path] = fetch(pin, partial)
    (partial / "SOURCES.json").write_text(json.dumps({"benchmark": benchmark, "files": outcomes}, indent=2) + "\n")
    os.replace(partial, dest)
    return outcomes


def _rebased(todo: list[Pin], base_url: str | None) -> list[Pin]:
    """Pins with their URL's directory replaced by base_url (a mirror, or file:// in tests)."""
    if not base_url:
        return todo
    return [Pin(p.path, f"{base_url.rstrip('/')}/{p.path}", p.git_sha1, p.on_mismatch) for p in todo]
