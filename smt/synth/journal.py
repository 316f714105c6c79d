"""A stream's journal: every finished completion, appended (flushed and fsynced) as soon as it is done, so that a
killed or crashed shard, run again, generates only what is missing and never a duplicate. Each shard appends to
its own file in the stream's journal folder and reads every file there, so the journal also survives a finished
run: when a stream's token target rises (a larger budget, a new recipe), the rerun finds every earlier completion
and generates only the new items, whatever the shard count. A damaged entry is skipped (and generated again),
never a reason to delete a file by hand.

The file starts with a header naming the identity of the run that wrote it: the code, the model and every
backend setting that shapes a completion. A journal written under another identity is discarded, and the log
says what changed; each entry also carries a digest of its request, checked one by one.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from smt import io
from smt.synth.generation import BackendSettings, Completion

PARTIAL_FORMAT = 1
ENTRY_FIELDS = {"key", "digest", "text", "finish_reason", "prompt_tokens", "completion_tokens"}


def _parse(line: bytes) -> dict[str, Any] | None:
    """One JSON object, or None for anything else (a torn write, damaged bytes)."""
    try:
        value = json.loads(line.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        return None
    return value if isinstance(value, dict) else None


class Partial:
    """A shard's completions so far: one JSON line each after a header naming the model and backend."""

    def __init__(self, path: Path, identity: dict[str, Any], log: Callable[[str], None] = print) -> None:
        self.path = path
        self.identity = identity
        self.log = log
        self.skipped = 0  # damaged entries the last load left out

    def load(self) -> dict[str, dict[str, Any]]:
        """Completions by key. A line that is not a whole entry (cut short by a kill, or damaged on disk; any
        line, not only the last) is skipped, counted in `skipped` and logged, and the file is rewritten without
        it, so the rerun generates that completion again. A file made by other code, another model or other
        backend settings (the header differs or is unreadable) is stale as a whole, and the log says why."""
        self.skipped = 0
        if not self.path.exists():
            return {}
        raw = self.path.read_bytes()
        lines = raw.split(b"\n")
        header = _parse(lines[0])
        previous = header.get("identity") if header else None
        if previous != self.identity:
            changed = sorted(
                k for k in self.identity if not isinstance(previous, dict) or previous.get(k) != self.identity[k]
            )
            why = "unreadable header" if header is None else f"changed: {', '.join(changed) or 'format'}"
            self.log(f"{self.path}: discarding the completions of an earlier run ({why})")
            self.path.unlink()
            return {}
        entries: dict[str, dict[str, Any]] = {}
        bad = []
        for n, line in enumerate(lines[1:], 2):
            if not line.strip():
                continue
            entry = _parse(line)
            if entry is None or not ENTRY_FIELDS <= set(entry):
                bad.append(n)
                continue
            entries[entry["key"]] = entry
        self.skipped = len(bad)
        if bad or not raw.endswith(b"\n"):  # rewritten whole, so appends start on a fresh line
            if bad:
                shown = ", ".join(map(str, bad[:10])) + (" ..." if len(bad) > 10 else "")
                self.log(f"{self.path}: skipped {len(bad)} damaged entries (lines {shown}); they are generated again")
            io.write_text(
                self.path, "".join(json.dumps(x, ensure_ascii=False) + "\n" for x in [header, *entries.values()])
            )
        return entries

    def append(self, entries: list[dict[str, Any]]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        new = not self.path.exists()
        with self.path.open("a") as fh:
            if new:
                fh.write(json.dumps({"partial": PARTIAL_FORMAT, "identity": self.identity}) + "\n")
            for entry in entries:
                fh.write(json.dumps(entry, ensure_ascii=False) + "\n")
            fh.flush()
            os.fsync(fh.fileno())

    def remove(self) -> None:
        self.path.unlink(missing_ok=True)


def load_all(
    folder: Path, identity: dict[str, Any], log: Callable[[str], None] = print
) -> tuple[dict[str, dict[str, Any]], int]:
    """Every usable completion in a journal folder, by key (files of another identity are discarded), and the
    number of damaged entries skipped."""
    found: dict[str, dict[str, Any]] = {}
    skipped = 0
    for path in sorted(folder.glob("*.jsonl")) if folder.is_dir() else []:
        partial = Partial(path, identity, log)
        found.update(partial.load())
        skipped += partial.skipped
    return found, skipped


def completion(entry: dict[str, Any]) -> Completion:
    """A journaled completion, as the backend returned it."""
    return Completion(
        entry["key"],
        entry["text"],
        entry["finish_reason"],
        entry["prompt_tokens"],
        entry["completion_tokens"],
        entry.get("error", ""),
    )


def entry(c: Completion, digest: str) -> dict[str, Any]:
    entry = {
        "key": c.key,
        "digest": digest,
        "text": c.text,
        "finish_reason": c.finish_reason,
        "prompt_tokens": c.prompt_tokens,
        "completion_tokens": c.completion_tokens,
    }
    if c.error:
        entry["error"] = c.error
    return entry


# Settings of the HTTP backend that change how requests are sent, not what comes back.
TRANSPORT_SETTINGS = ("batch_size", "concurrency", "max_retries", "backoff_seconds", "timeout_seconds")


def partial_identity(settings: BackendSettings, model_revision: str, code: dict[str, str]) -> dict[str, Any]:
    """What must match for a partial file's completions to be reused (the requests are checked one by one):
    the code that made them, the model and every backend setting that shapes a completion."""
    chat = {"chat_template_kwargs": settings.chat_template_kwargs} if settings.chat_template_kwargs else {}
    if settings.backend == "http":
        http = {k: v for k, v in settings.http.items() if k not in TRANSPORT_SETTINGS and k != "api_key_env"}
        return {"backend": "http", "http": http, "code": code, **chat}
    identity = {"backend": settings.backend, "model": model_revision, "dtype": settings.dtype, "code": code, **chat}
    if settings.backend == "vllm":
        identity["vllm"] = {k: v for k, v in settings.vllm.items() if k != "batch_size"}
    return identity
