"""A stream's journal: every finished completion, appended (flushed and fsynced) as soon as it is done, so that a
killed or crashed shard, run again, generates only what is missing and never a duplicate. Each shard appends to
its own file in the stream's journal folder and reads every file there, so the journal also survives a finished
run: when a stream's token target rises (a larger budget, a new recipe), the rerun finds every earlier completion
and generates only the new items, whatever the shard count.

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


class Partial:
    """A shard's completions so far: one JSON line each after a header naming the model and backend."""

    def __init__(self, path: Path, identity: dict[str, Any], log: Callable[[str], None] = print) -> None:
        self.path = path
        self.identity = identity
        self.log = log

    def load(self) -> dict[str, dict[str, Any]]:
        """Completions by key. A last line cut short by a kill is dropped; one made by other code, another model
        or other backend settings (the header differs) means the whole file is stale, and the log says why."""
        if not self.path.exists():
            return {}
        lines = self.path.read_text().split("\n")
        intact = self.path.read_text().endswith("\n")
        try:
            header = json.loads(lines[0])
        except json.JSONDecodeError:
            header = {}
        previous = header.get("identity")
        if previous != self.identity:
            changed = sorted(
                k for k in self.identity if not isinstance(previous, dict) or previous.get(k) != self.identity[k]
            )
            self.log(
                f"{self.path}: discarding the completions of an earlier run (changed: {', '.join(changed) or 'format'})"
            )
            self.path.unlink()
            return {}
        entries: dict[str, dict[str, Any]] = {}
        body = [line for line in lines[1:] if line.strip()]
        for n, line in enumerate(body):
            try:
                entry = json.loads(line)
            except json.JSONDecodeError as exc:
                if n == len(body) - 1:  # the line a kill interrupted
                    intact = False
                    break
                raise ValueError(f"{self.path}: line {n + 2}: not valid JSON ({exc.msg})") from exc
            entries[entry["key"]] = entry
        if not intact:  # rewrite without the interrupted line, so appends start on a fresh line
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


def load_all(folder: Path, identity: dict[str, Any], log: Callable[[str], None] = print) -> dict[str, dict[str, Any]]:
    """Every usable completion in a journal folder, by key (files of another identity are discarded)."""
    found: dict[str, dict[str, Any]] = {}
    for path in sorted(folder.glob("*.jsonl")) if folder.is_dir() else []:
        found.update(Partial(path, identity, log).load())
    return found


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
    if settings.backend == "http":
        http = {k: v for k, v in settings.http.items() if k not in TRANSPORT_SETTINGS and k != "api_key_env"}
        return {"backend": "http", "http": http, "code": code}
    identity = {"backend": settings.backend, "model": model_revision, "dtype": settings.dtype, "code": code}
    if settings.backend == "vllm":
        identity["vllm"] = {k: v for k, v in settings.vllm.items() if k != "batch_size"}
    return identity
