"""PDF to text, page by page, with pypdfium2 (PDFium, Chrome's PDF engine).

Chosen by measurement on the 70 FinanceBench filings (bench/pdf_extract.py, bench/results/pdf_extract.json): its
page text matches the benchmark's own evidence pages as closely as PyMuPDF's (similarity 0.996, every evidence
page found on its own page number) at 119 pages/s on one core, 20x faster than pypdf and 50x faster than
pdfminer.six; PyMuPDF is 2x faster but AGPL-licensed, which does not fit this Apache-2.0 project, and it opens a
truncated file without an error where PDFium raises one. PDFium is not thread-safe, so files are converted in
worker processes.
"""

from __future__ import annotations

import importlib.metadata
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path

from tqdm import tqdm

from smt.benchmarks.tables import BenchmarkInputError


def library() -> str:
    return f"pypdfium2 {importlib.metadata.version('pypdfium2')}"


def pages(path: Path) -> list[str]:
    """The text of every page (index = 0-based page number); an unreadable file is an error naming it."""
    import pypdfium2 as pdfium

    try:
        document = pdfium.PdfDocument(str(path))
    except (pdfium.PdfiumError, OSError) as exc:
        raise BenchmarkInputError(path, "<file>", None, f"unreadable PDF ({exc})") from exc
    texts = []
    try:
        for i in range(len(document)):
            page = document[i]
            textpage = page.get_textpage()
            texts.append(clean(textpage.get_text_range()))
            textpage.close()
            page.close()
    except pdfium.PdfiumError as exc:
        raise BenchmarkInputError(path, f"page {len(texts)}", None, f"unreadable PDF page ({exc})") from exc
    finally:
        document.close()
    if not texts:
        raise BenchmarkInputError(path, "<file>", None, "unreadable PDF (no pages)")
    return texts


def clean(text: str) -> str:
    """PDFium ends lines with \r\n and writes U+FFFE where a soft hyphen breaks a word ("year\ufffeon-year")."""
    return text.replace("\r\n", "\n").replace("\r", "\n").replace("\ufffe", "-")


def convert_all(paths: list[Path], workers: int = 1) -> dict[Path, list[str]]:
    """Page texts of many PDFs, converted by `workers` processes, with a progress bar."""
    if not paths:
        return {}
    bar = tqdm(total=len(paths), desc="converting PDFs", unit="pdf")
    result: dict[Path, list[str]] = {}
    if workers <= 1:
        for path in paths:
            result[path] = pages(path)
            bar.update()
    else:
        try:
            with ProcessPoolExecutor(max_workers=workers) as pool:
                for path, texts in zip(paths, pool.map(pages, paths), strict=True):
                    result[path] = texts
                    bar.update()
        except BrokenProcessPool:
            _name_the_crash([p for p in paths if p not in result])
    bar.close()
    return result


def _name_the_crash(paths: list[Path]) -> None:
    """A worker died inside PDFium (no exception to report): convert the files not done yet one at a time, each
    in a fresh process, to name the one that kills its converter."""
    for path in paths:
        try:
            with ProcessPoolExecutor(max_workers=1) as pool:
                pool.submit(pages, path).result()
        except BrokenProcessPool:
            raise BenchmarkInputError(path, "<file>", None, "the PDF converter crashed on this file") from None
    raise RuntimeError(f"a PDF converter process died, but none of {len(paths)} files crashed it again")
