"""Content hashing of files and folders, and the identity of a model folder: the one implementation every
identity in smt is built on.

Files above 64 MiB are hashed by three 8 MiB samples (start, middle, end), so a 100 GB model folder is
identified in seconds; smaller files are hashed whole. A digest is computed once per process for a given path,
size and modification time.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.util
import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from smt import io

FULL_HASH_LIMIT = 64 * 2**20
SAMPLE_BYTES = 8 * 2**20


@functools.cache
def _digest(path: str, size: int, mtime_ns: int) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        if size <= FULL_HASH_LIMIT:
            for block in iter(lambda: fh.read(2**20), b""):
                digest.update(block)
        else:
            for offset in (0, size // 2, size - SAMPLE_BYTES):
                fh.seek(offset)
                digest.update(fh.read(SAMPLE_BYTES))
    return digest.hexdigest()


def file_sha256(path: str | Path) -> str:
    """The sha256 of a file (sampled above 64 MiB), as 64 hex digits."""
    stat = Path(path).stat()
    return _digest(str(path), stat.st_size, stat.st_mtime_ns)


def sha256(path: str | Path) -> str:
    """The full sha256 of a file, whatever its size (for provenance that others compare with published hashes)."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(2**20), b""):
            digest.update(block)
    return digest.hexdigest()


def folder_files(path: str | Path) -> list[Path]:
    """The files of a folder that make up its content: hidden files and byte-code caches are not."""
    path = Path(path)
    if path.is_file():
        return [path]
    return sorted(
        p
        for p in path.rglob("*")
        if p.is_file() and not any(part.startswith(".") or part == "__pycache__" for part in p.relative_to(path).parts)
    )


def content_hash(path: str | Path) -> str:
    """A short content hash of a file or folder: relative names, sizes and contents."""
    path = Path(path)
    digest = hashlib.sha256()
    for f in folder_files(path):
        rel = f.name if f == path else f.relative_to(path).as_posix()
        digest.update(f"{rel}\x1f{f.stat().st_size}\x1f{file_sha256(f)}\n".encode())
    return digest.hexdigest()[:16]


def files_hash(paths: Iterable[str | Path]) -> dict[str, str]:
    """Short content hashes of several files, by path (for code and configuration in identities)."""
    return {str(p): file_sha256(p)[:16] for p in paths}


def package_dir(package: str) -> Path:
    """Where an installed package lives, without importing it (its imports may need extras smt skips)."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(f"package {package!r} is not installed (see envs/requirements-models.txt)")
    return Path(next(iter(spec.submodule_search_locations)))


MANIFEST = "smt_manifest.json"  # what smt records in every model folder it writes


def read_manifest(folder: str | Path) -> dict[str, Any]:
    """A model folder's smt manifest ({} for a folder smt did not write)."""
    path = Path(folder) / MANIFEST
    return json.loads(path.read_text()) if path.exists() else {}


def write_manifest(folder: str | Path, manifest: dict[str, Any]) -> None:
    io.write_json(Path(folder) / MANIFEST, manifest)


def model_identity(folder: str | Path) -> dict[str, Any]:
    """Model id and revision of a model folder: its manifest's id and revision when it records one, else a
    content hash of the folder."""
    manifest = read_manifest(folder)
    revision = manifest.get("revision") or f"sha256:{content_hash(folder)}"
    return {"id": manifest.get("model_id"), "revision": revision, "source": manifest.get("source"), "path": str(folder)}
