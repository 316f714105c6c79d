#!/usr/bin/env python3
"""Benchmark PDF-to-text libraries on the FinanceBench PDFs, page by page.

For every library the script converts each PDF to one string per page (0-based page index) and measures:

* speed: pages, wall seconds, pages/s, chars/s (single process, one library at a time);
* quality against ``evidence_text_full_page`` of ``financebench_open_source.jsonl``:
  whitespace-collapsed ``rapidfuzz.fuzz.ratio`` similarity, the same with all whitespace removed,
  token F1 of the page (order-free), recall of the ``evidence_text`` snippet tokens,
  and page alignment (is the best-matching page of the PDF exactly ``evidence_page_num``?);
* robustness: empty pages, per-PDF / per-page exceptions, and which exception a corrupt or truncated PDF raises.

Note: the reference page texts were produced by the FinanceBench authors with their own extractor, so the
character similarity favours a library with the same whitespace/ordering conventions; the token metrics and the
page alignment are less sensitive to that.

The candidate libraries are not project dependencies; install them into a separate virtualenv, e.g.::

    python3.11 -m venv /tmp/pdfvenv
    /tmp/pdfvenv/bin/pip install pypdfium2 pymupdf pypdf pdfminer.six rapidfuzz
    /tmp/pdfvenv/bin/python bench/pdf_extract.py --libraries pypdfium2 pymupdf
    /tmp/pdfvenv/bin/python bench/pdf_extract.py --libraries pypdf pdfminer.six --max-pdfs 10 --append
"""

from __future__ import annotations

import argparse
import gc
import importlib
import importlib.metadata
import io
import json
import os
import platform
import re
import statistics
import sys
import tempfile
import time
import traceback
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = REPO_ROOT / ".." / "shared" / "data" / "financebench"
DEFAULT_OUT = REPO_ROOT / "bench" / "results" / "pdf_extract.json"
TOKEN_RE = re.compile(r"\w+")

# ---------------------------------------------------------------------------------------------------------------
# Extractors: each takes a PDF path and returns (page_texts, page_errors). Whole-document failures raise.
# ---------------------------------------------------------------------------------------------------------------

PageResult = tuple[list[str], list[str]]


def extract_pypdfium2(path: Path) -> PageResult:
    """Extract page texts with pypdfium2 (PDFium ``FPDFText_GetText`` over the whole page)."""
    import pypdfium2 as pdfium

    texts: list[str] = []
    errors: list[str] = []
    pdf = pdfium.PdfDocument(path)
    try:
        for i in range(len(pdf)):
            try:
                page = pdf[i]
                textpage = page.get_textpage()
                texts.append(textpage.get_text_range())
                textpage.close()
                page.close()
            except Exception as exc:
                texts.append("")
                errors.append(f"page {i}: {type(exc).__name__}: {exc}")
    finally:
        pdf.close()
    return texts, errors


def extract_pymupdf(path: Path) -> PageResult:
    """Extract page texts with PyMuPDF ``Page.get_text()`` (plain text mode)."""
    import pymupdf

    texts: list[str] = []
    errors: list[str] = []
    with pymupdf.open(path) as doc:
        for i in range(doc.page_count):
            try:
                texts.append(doc[i].get_text())
            except Exception as exc:
                texts.append("")
                errors.append(f"page {i}: {type(exc).__name__}: {exc}")
    return texts, errors


def extract_pypdf(path: Path) -> PageResult:
    """Extract page texts with pypdf ``PageObject.extract_text()`` (default plain mode)."""
    import pypdf

    texts: list[str] = []
    errors: list[str] = []
    reader = pypdf.PdfReader(path)
    for i, page in enumerate(reader.pages):
        try:
            texts.append(page.extract_text())
        except Exception as exc:
            texts.append("")
            errors.append(f"page {i}: {type(exc).__name__}: {exc}")
    return texts, errors


def extract_pdfminer(path: Path) -> PageResult:
    """Extract page texts with pdfminer.six (``TextConverter`` + default ``LAParams``, as ``extract_text``)."""
    from pdfminer.converter import TextConverter
    from pdfminer.layout import LAParams
    from pdfminer.pdfinterp import PDFPageInterpreter, PDFResourceManager
    from pdfminer.pdfpage import PDFPage

    texts: list[str] = []
    errors: list[str] = []
    rsrc = PDFResourceManager(caching=True)
    buf = io.StringIO()
    with path.open("rb") as fh:
        device = TextConverter(rsrc, buf, laparams=LAParams())
        interpreter = PDFPageInterpreter(rsrc, device)
        for i, page in enumerate(PDFPage.get_pages(fh)):
            buf.seek(0)
            buf.truncate(0)
            try:
                interpreter.process_page(page)
                texts.append(buf.getvalue())
            except Exception as exc:
                texts.append("")
                errors.append(f"page {i}: {type(exc).__name__}: {exc}")
        device.close()
    return texts, errors


@dataclass(frozen=True)
class Library:
    """A candidate library: how to import it, its distribution, licence and extractor."""

    name: str
    module: str
    dist: str
    license: str
    extract: Callable[[Path], PageResult]


LIBRARIES: dict[str, Library] = {
    lib.name: lib
    for lib in (
        Library(
            "pypdfium2",
            "pypdfium2",
            "pypdfium2",
            "Apache-2.0 OR BSD-3-Clause (bundled PDFium: BSD-3-Clause/Apache-2.0)",
            extract_pypdfium2,
        ),
        Library("pymupdf", "pymupdf", "pymupdf", "AGPL-3.0 or Artifex commercial", extract_pymupdf),
        Library("pypdf", "pypdf", "pypdf", "BSD-3-Clause", extract_pypdf),
        Library("pdfminer.six", "pdfminer", "pdfminer.six", "MIT", extract_pdfminer),
    )
}

# ---------------------------------------------------------------------------------------------------------------
# Metrics
# ---------------------------------------------------------------------------------------------------------------


def collapse_ws(text: str) -> str:
    """Collapse every whitespace run to a single space and strip the ends."""
    return " ".join(text.split())


def no_ws(text: str) -> str:
    """Remove all whitespace (neutralises differing line/space conventions between extractors)."""
    return "".join(text.split())


def tokens(text: str) -> Counter[str]:
    """Lower-cased ``\\w+`` token multiset."""
    return Counter(TOKEN_RE.findall(text.lower()))


def token_recall(reference: Counter[str], candidate: Counter[str]) -> float:
    """Share of reference tokens (with multiplicity) that occur in the candidate."""
    total = sum(reference.values())
    return sum((reference & candidate).values()) / total if total else 1.0


def token_f1(reference: Counter[str], candidate: Counter[str]) -> float:
    """Order-free token F1 between two multisets."""
    common = sum((reference & candidate).values())
    if common == 0:
        return 0.0
    precision = common / sum(candidate.values())
    recall = common / sum(reference.values())
    return 2 * precision * recall / (precision + recall)


def load_evidence(data: Path) -> list[dict[str, Any]]:
    """Flatten the evidence items of all questions (one row per evidence item, duplicates kept)."""
    rows: list[dict[str, Any]] = []
    with (data / "financebench_open_source.jsonl").open(encoding="utf-8") as fh:
        for line in fh:
            question = json.loads(line)
            for j, ev in enumerate(question["evidence"]):
                rows.append(
                    {
                        "id": f"{question['financebench_id']}#{j}",
                        "doc_name": ev["doc_name"],
                        "page": int(ev["evidence_page_num"]),
                        "snippet": ev["evidence_text"],
                        "full_page": ev["evidence_text_full_page"],
                    }
                )
    return rows


def select_pdfs(data: Path, max_pdfs: int | None) -> list[Path]:
    """All PDFs sorted by name, or ``max_pdfs`` of them evenly spaced over the sorted list (deterministic)."""
    pdfs = sorted((data / "pdfs").glob("*.pdf"))
    if max_pdfs is None or max_pdfs >= len(pdfs):
        return pdfs
    return [pdfs[(i * len(pdfs)) // max_pdfs] for i in range(max_pdfs)]


def score_evidence(evidence: list[dict[str, Any]], texts: dict[str, list[str] | None]) -> list[dict[str, Any]]:
    """Score every evidence item whose PDF was converted; alignment uses the best ``fuzz.ratio`` page."""
    from rapidfuzz import fuzz, process

    collapsed_cache: dict[str, list[str]] = {}
    scores: list[dict[str, Any]] = []
    for ev in evidence:
        if ev["doc_name"] not in texts:
            continue
        pages = texts[ev["doc_name"]]
        row: dict[str, Any] = {"id": ev["id"], "doc_name": ev["doc_name"], "page": ev["page"]}
        if pages is None or ev["page"] >= len(pages):
            row.update(sim=0.0, sim_nows=0.0, page_f1=0.0, snippet_recall=0.0, best_page=None, aligned=False)
            row["note"] = "pdf failed" if pages is None else f"page out of range ({len(pages)} pages)"
            scores.append(row)
            continue
        if ev["doc_name"] not in collapsed_cache:
            collapsed_cache[ev["doc_name"]] = [collapse_ws(t) for t in pages]
        collapsed = collapsed_cache[ev["doc_name"]]
        ref = collapse_ws(ev["full_page"])
        text = pages[ev["page"]]
        best = process.extractOne(ref, collapsed, scorer=fuzz.ratio)
        best_page = int(best[2]) if best is not None else None
        row.update(
            sim=round(fuzz.ratio(ref, collapsed[ev["page"]]) / 100, 4),
            sim_nows=round(fuzz.ratio(no_ws(ev["full_page"]), no_ws(text)) / 100, 4),
            page_f1=round(token_f1(tokens(ev["full_page"]), tokens(text)), 4),
            snippet_recall=round(token_recall(tokens(ev["snippet"]), tokens(text)), 4),
            best_page=best_page,
            aligned=best_page == ev["page"],
        )
        scores.append(row)
    return scores


# ---------------------------------------------------------------------------------------------------------------
# Runs
# ---------------------------------------------------------------------------------------------------------------


def library_version(lib: Library) -> dict[str, Any]:
    """Distribution version, wheel tags and (where exposed) the native engine version."""
    info: dict[str, Any] = {"version": importlib.metadata.version(lib.dist)}
    try:
        wheel = importlib.metadata.distribution(lib.dist).read_text("WHEEL") or ""
        info["wheel_tags"] = [line.split(":", 1)[1].strip() for line in wheel.splitlines() if line.startswith("Tag:")]
    except Exception:
        info["wheel_tags"] = []
    if lib.name == "pypdfium2":
        import pypdfium2.version as pv

        info["engine"] = f"PDFium {pv.PDFIUM_INFO}"
    elif lib.name == "pymupdf":
        import pymupdf

        info["engine"] = f"MuPDF {pymupdf.VersionFitz}"
    return info


def corrupt_probe(lib: Library, sample_pdf: Path | None) -> dict[str, str]:
    """Feed garbage, empty and truncated files to the extractor and record what happens."""
    results: dict[str, str] = {}
    with tempfile.TemporaryDirectory() as tmp:
        cases: dict[str, bytes] = {"garbage": b"this is not a pdf\n" * 64, "empty": b""}
        if sample_pdf is not None:
            raw = sample_pdf.read_bytes()
            cases["truncated_30pct"] = raw[: len(raw) * 3 // 10]
        for case, payload in cases.items():
            path = Path(tmp) / f"{case}.pdf"
            path.write_bytes(payload)
            try:
                pages, errors = lib.extract(path)
                chars = sum(len(t) for t in pages)
                results[case] = f"no exception: {len(pages)} pages, {chars} chars, {len(errors)} page errors"
            except Exception as exc:
                results[case] = f"{type(exc).__module__}.{type(exc).__qualname__}: {str(exc)[:160]}"
    return results


def run_library(lib: Library, pdfs: list[Path], evidence: list[dict[str, Any]], progress: bool) -> dict[str, Any]:
    """Convert all PDFs with one library, then score them."""
    importlib.import_module(lib.module)  # import outside the timed region
    texts: dict[str, list[str] | None] = {}
    per_pdf: list[dict[str, Any]] = []
    failures: list[dict[str, str]] = []
    gc.collect()
    wall0, cpu0 = time.perf_counter(), time.process_time()
    for n, pdf in enumerate(pdfs, 1):
        t0 = time.perf_counter()
        try:
            pages, page_errors = lib.extract(pdf)
        except Exception as exc:
            texts[pdf.stem] = None
            failures.append({"pdf": pdf.name, "error": f"{type(exc).__name__}: {exc}", "trace": traceback.format_exc()})
            per_pdf.append({"pdf": pdf.name, "seconds": round(time.perf_counter() - t0, 4), "failed": True})
            continue
        seconds = time.perf_counter() - t0
        texts[pdf.stem] = pages
        for err in page_errors:
            failures.append({"pdf": pdf.name, "error": err})
        per_pdf.append(
            {
                "pdf": pdf.name,
                "pages": len(pages),
                "seconds": round(seconds, 4),
                "chars": sum(len(t) for t in pages),
                "empty_pages": sum(1 for t in pages if not t.strip()),
                "page_errors": len(page_errors),
            }
        )
        if progress:
            print(f"  [{lib.name}] {n}/{len(pdfs)} {pdf.name}: {len(pages)} pages {seconds:.2f}s", file=sys.stderr)
    wall = time.perf_counter() - wall0
    cpu = time.process_time() - cpu0

    t0 = time.perf_counter()
    scores = score_evidence(evidence, texts)
    scoring_seconds = time.perf_counter() - t0

    pages_total = sum(p.get("pages", 0) for p in per_pdf)
    chars_total = sum(p.get("chars", 0) for p in per_pdf)

    def mean(key: str) -> float | None:
        return round(statistics.fmean(s[key] for s in scores), 4) if scores else None

    return {
        "library": lib.name,
        **library_version(lib),
        "license": lib.license,
        "pdfs": len(pdfs),
        "pdf_names": [p.name for p in pdfs],
        "pdfs_failed": sum(1 for p in per_pdf if p.get("failed")),
        "pages": pages_total,
        "chars": chars_total,
        "empty_pages": sum(p.get("empty_pages", 0) for p in per_pdf),
        "wall_seconds": round(wall, 3),
        "cpu_seconds": round(cpu, 3),
        "pages_per_s": round(pages_total / wall, 2) if wall else None,
        "chars_per_s": round(chars_total / wall) if wall else None,
        "failures": len(failures),
        "failure_details": [{k: v for k, v in f.items() if k != "trace"} for f in failures],
        "evidence_items": len(scores),
        "sim_mean": mean("sim"),
        "sim_median": round(statistics.median(s["sim"] for s in scores), 4) if scores else None,
        "sim_nows_mean": mean("sim_nows"),
        "page_f1_mean": mean("page_f1"),
        "snippet_recall_mean": mean("snippet_recall"),
        "page_alignment": round(sum(s["aligned"] for s in scores) / len(scores), 4) if scores else None,
        "scoring_seconds": round(scoring_seconds, 2),
        "corrupt_probe": corrupt_probe(lib, min(pdfs, key=lambda p: p.stat().st_size) if pdfs else None),
        "per_pdf": per_pdf,
        "per_evidence": scores,
    }


def machine_info() -> dict[str, Any]:
    """CPU, OS and Python details for the results file."""
    cpu_model = platform.processor()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu_model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "cpu_count": os.cpu_count(),
        "cpu_affinity": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "cpu_model": cpu_model,
        "platform": platform.platform(),
        "python": sys.version.split()[0],
        "python_implementation": platform.python_implementation(),
        "rapidfuzz": importlib.metadata.version("rapidfuzz"),
    }


def fmt(value: Any, spec: str) -> str:
    """Format a number, or '-' for None."""
    return "-" if value is None else format(value, spec)


def print_table(runs: list[dict[str, Any]]) -> None:
    """Print one row per run."""
    header = (
        f"{'library':<13} {'version':<10} {'license':<14} {'pdfs':>4} {'pages':>6} {'s':>8} {'pages/s':>8} "
        f"{'chars/s':>9} {'sim':>6} {'sim_med':>7} {'sim_nows':>8} {'tokF1':>6} {'snip_rec':>8} {'page_aln':>8} "
        f"{'empty':>5} {'fail':>4}"
    )
    print(header)
    print("-" * len(header))
    for r in runs:
        print(
            f"{r['library']:<13} {r['version']:<10} {r['license'].split(' ')[0]:<14} {r['pdfs']:>4} {r['pages']:>6} "
            f"{fmt(r['wall_seconds'], '.1f'):>8} {fmt(r['pages_per_s'], '.1f'):>8} {fmt(r['chars_per_s'], ',d'):>9} "
            f"{fmt(r['sim_mean'], '.3f'):>6} {fmt(r['sim_median'], '.3f'):>7} {fmt(r['sim_nows_mean'], '.3f'):>8} "
            f"{fmt(r['page_f1_mean'], '.3f'):>6} {fmt(r['snippet_recall_mean'], '.3f'):>8} "
            f"{fmt(r['page_alignment'], '.3f'):>8} {r['empty_pages']:>5} {r['failures']:>4}"
        )


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="FinanceBench data dir (pdfs/ + jsonl)")
    parser.add_argument(
        "--libraries",
        nargs="*",
        default=list(LIBRARIES),
        choices=list(LIBRARIES),
        help="libraries to run (default: all); give none with --append to only rewrite the file and table",
    )
    parser.add_argument("--max-pdfs", type=int, default=None, help="evenly spaced subset of the sorted PDFs")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="JSON results file")
    parser.add_argument(
        "--append",
        action="store_true",
        help="merge into an existing --out file (replaces runs with the same library and PDF count)",
    )
    parser.add_argument("--progress", action="store_true", help="print one line per PDF to stderr")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and write the JSON results."""
    args = parse_args(argv)
    data = args.data.resolve()
    pdfs = select_pdfs(data, args.max_pdfs)
    if not pdfs:
        print(f"no PDFs under {data / 'pdfs'}", file=sys.stderr)
        return 2
    evidence = load_evidence(data)
    all_pdfs = sorted((data / "pdfs").glob("*.pdf"))
    subset_note = "all PDFs" if len(pdfs) == len(all_pdfs) else f"subset: {len(pdfs)} of {len(all_pdfs)} PDFs"

    runs: list[dict[str, Any]] = []
    if args.append and args.out.exists():
        runs = json.loads(args.out.read_text(encoding="utf-8")).get("runs", [])
    for name in args.libraries:
        lib = LIBRARIES[name]
        try:
            importlib.import_module(lib.module)
        except ImportError as exc:
            print(f"skipping {name}: not installed ({exc})", file=sys.stderr)
            continue
        print(f"running {name} on {len(pdfs)} PDFs ({subset_note}) ...", file=sys.stderr)
        result = run_library(lib, pdfs, evidence, args.progress)
        result["pdf_selection"] = subset_note + ("" if args.max_pdfs is None else f" (--max-pdfs {args.max_pdfs})")
        result["timestamp"] = datetime.now(UTC).isoformat(timespec="seconds")
        runs = [r for r in runs if not (r["library"] == name and r["pdfs"] == len(pdfs))] + [result]
        gc.collect()

    runs.sort(key=lambda r: (-r["pdfs"], r["library"]))
    payload = {
        "benchmark": "PDF page-by-page text extraction on FinanceBench open-source PDFs",
        "data": str(data),
        "evidence_items_total": len(evidence),
        "evidence_items_with_pdf": sum(1 for e in evidence if (data / "pdfs" / f"{e['doc_name']}.pdf").exists()),
        "metrics": {
            "sim": "rapidfuzz fuzz.ratio/100 of whitespace-collapsed page text vs evidence_text_full_page",
            "sim_nows": "same with all whitespace removed",
            "page_f1": "order-free \\w+ token F1 (lower-case) of the page vs evidence_text_full_page",
            "snippet_recall": "share of evidence_text tokens (with multiplicity) present in the page",
            "page_alignment": "share of evidence items whose best fuzz.ratio page in the PDF == evidence_page_num",
            "timing": "wall seconds of open+extract over all PDFs, single process, imports excluded",
        },
        "machine": machine_info(),
        "runs_on_subset": sorted(f"{r['library']}: {r['pdf_selection']}" for r in runs if r["pdfs"] < len(all_pdfs)),
        "runs": runs,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(payload, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    print_table(runs)
    print(f"wrote {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
