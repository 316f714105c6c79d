"""Sharded, resumable generation for the synthetic-data stages.

A stage instance's documents (sorted by id) are dealt round-robin into `generation.shards` shards. Snakemake
runs one job per shard (rule `<stage>_shard`: `python -m smt <stage> ... --shard i`); the stage's own command
runs every shard that is not complete yet, then merges them in document order (under DVC it does all of it).
Records do not depend on the shard count or the batch size: every request has its own seed, and records are
merged in document order.

Resuming: each finished completion is appended (flushed and fsynced) to the shard's partial file with its item
key and a digest of its request; a rerun after a crash or a kill reuses them and generates only the rest. A
shard completes atomically: its records, then its manifest, which holds the fingerprint of everything the shard
depends on (params, inputs, code), then the partial file goes. A complete shard whose fingerprint no longer
matches is generated again; after a merge the shard files are removed.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tqdm import tqdm

from smt import artifacts, io, prompts, synth
from smt import params as P
from smt import registry as R
from smt.context import StageContext
from smt.generation import Backend, BackendSettings, Completion, Request, Sampling, make_backend

PARTIAL_FORMAT = 1


def assign(docs: list[dict[str, Any]], index: int, count: int) -> list[dict[str, Any]]:
    """The documents of shard `index` of `count` (round-robin over documents sorted by id)."""
    return docs[index::count]


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


class ShardRun:
    """One shard's generation: completions come from the partial file when it has them, else from the backend,
    in chunks of the backend's batch size, each appended to the partial file as soon as it is done."""

    def __init__(
        self,
        ctx: StageContext,
        index: int,
        count: int,
        documents: list[dict[str, Any]],
        partial: Partial,
        backend: Callable[[], Backend],
    ) -> None:
        self.ctx = ctx
        self.index, self.count = index, count
        self.documents = documents
        self.partial = partial
        self._backend = backend
        self.cache = partial.load()
        self.requests = self.resumed = 0
        self.prompt_tokens = self.completion_tokens = 0
        self.generated = self.generated_tokens = 0
        self.generation_seconds = 0.0
        self.backend_used = False

    @property
    def seed(self) -> int:
        return self.ctx.p("seed")

    @property
    def label(self) -> str:
        return f"{R.instance_id(self.ctx.stage, self.ctx.axes)} shard {self.index + 1}/{self.count}"

    def complete(self, requests: list[Request], sampling: Sampling, step: str) -> list[Completion]:
        digests = {r.key: r.digest(sampling) for r in requests}
        if len(digests) != len(requests):
            raise ValueError(f"{self.label} {step}: duplicate request keys")
        done: dict[str, Completion] = {}
        for r in requests:
            entry = self.cache.get(r.key)
            if entry and entry["digest"] == digests[r.key]:
                done[r.key] = Completion(
                    r.key,
                    entry["text"],
                    entry["finish_reason"],
                    entry["prompt_tokens"],
                    entry["completion_tokens"],
                    entry.get("error", ""),
                )
        self.resumed += len(done)
        pending = [r for r in requests if r.key not in done]
        if done:
            self.ctx.log.info("%s %s: %d of %d completions resumed", self.label, step, len(done), len(requests))
        with tqdm(
            total=len(requests), initial=len(done), desc=f"{self.label} {step}", unit="item", dynamic_ncols=True
        ) as bar:
            if pending:
                backend = self._backend()
                self.backend_used = True
                for start in range(0, len(pending), backend.batch_size):
                    chunk = pending[start : start + backend.batch_size]
                    began = time.perf_counter()
                    out = backend.generate(chunk, sampling, desc=step, progress=False)
                    self.generation_seconds += time.perf_counter() - began
                    self.partial.append([_entry(c, digests[c.key]) for c in out])
                    for c in out:
                        done[c.key] = c
                        self.generated += 1
                        self.generated_tokens += c.completion_tokens
                    bar.update(len(chunk))
                    bar.set_postfix(tok_s=f"{self.generated_tokens / max(self.generation_seconds, 1e-9):.1f}")
        result = [done[r.key] for r in requests]
        self.requests += len(result)
        self.prompt_tokens += sum(c.prompt_tokens for c in result)
        self.completion_tokens += sum(c.completion_tokens for c in result)
        return result


def _entry(c: Completion, digest: str) -> dict[str, Any]:
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


def _generation(counts: dict[str, Any]) -> dict[str, Any]:
    """Tokens of every completion the records come from (`prompt_tokens`, `completion_tokens`: what the output
    cost), and this run's own generation: `generated` completions, `generated_tokens`, backend `seconds` and
    `completion_tokens_per_s` (`resumed` completions came from an earlier, interrupted run)."""
    seconds = counts["seconds"]
    return {
        **counts,
        "seconds": round(seconds, 2),
        "completion_tokens_per_s": round(counts["generated_tokens"] / seconds, 2) if seconds else 0.0,
    }


class Engine:
    """Runs the shards of one stage instance (all of them, or the one `ctx.shard` names) and merges them."""

    def __init__(self, ctx: StageContext, produce: Callable[[ShardRun], synth.Outcome], records: str) -> None:
        self.ctx = ctx
        self.produce = produce
        self.records_output = records
        self.count = ctx.p(R.SHARDS_KEY)
        self.settings = synth.backend_settings(ctx)
        self.documents = synth.documents(ctx)
        self.model = synth.model_identity(ctx.input("model"))
        self.code = artifacts.files_hash(R.stage_code(ctx.stage, ctx.axes))
        self.fingerprint = self._fingerprint()
        self._backend: Backend | None = None

    def _fingerprint(self) -> str:
        """Everything a shard's records depend on: params values, input contents, code and shard count."""
        inputs = {name: [artifacts.content_hash(p) for p in paths] for name, paths in sorted(self.ctx.inputs.items())}
        blob = json.dumps(
            {
                "stage": self.ctx.stage.name,
                "axes": self.ctx.axes,
                "params": P.subset(self.ctx.params, self.ctx.keys),
                "inputs": inputs,
                "code": self.code,
                "shards": self.count,
            },
            sort_keys=True,
        )
        return hashlib.sha256(blob.encode()).hexdigest()[:16]

    def backend(self) -> Backend:
        if self._backend is None:
            self._backend = make_backend(self.settings)
            self.ctx.log.info("backend: %s", self._backend.describe())
        return self._backend

    def paths(self, index: int) -> dict[str, Path]:
        found = {k: Path(v) for k, v in R.shard_outputs(self.ctx.stage, self.ctx.axes, index).items()}
        found["partial"] = found["records"].with_suffix(".partial.jsonl")
        return found

    def sealed(self, index: int) -> dict[str, Any] | None:
        """The manifest of a complete shard made from the same params, inputs and code, else None."""
        paths = self.paths(index)
        if not (paths["manifest"].exists() and paths["records"].exists()):
            return None
        try:  # an empty or foreign file (say, one `snakemake --touch` created) is no complete shard
            manifest = io.read_json(paths["manifest"])
            if manifest.get("fingerprint") != self.fingerprint:
                return None
            if len(io.read_jsonl(paths["records"])) != manifest["counts"]["accepted"]:
                return None
        except (ValueError, KeyError, TypeError, AttributeError):
            return None
        return manifest

    def generate_shard(self, index: int) -> dict[str, Any]:
        started = time.time()
        paths = self.paths(index)
        docs = assign(self.documents, index, self.count)
        run = ShardRun(
            self.ctx,
            index,
            self.count,
            docs,
            Partial(
                paths["partial"], partial_identity(self.settings, self.model["revision"], self.code), self.ctx.log.info
            ),
            self.backend,
        )
        outcome = self.produce(run)
        manifest = self._manifest(run, outcome, docs, started)
        io.write_jsonl(paths["records"], outcome.records)
        io.write_json(paths["manifest"], manifest)
        run.partial.remove()
        self.ctx.log.info(
            "%s: %d accepted, %d rejected (%d completions resumed)",
            run.label,
            len(outcome.records),
            len(outcome.rejected),
            run.resumed,
        )
        return manifest

    def _manifest(
        self, run: ShardRun, outcome: synth.Outcome, docs: list[dict[str, Any]], started: float
    ) -> dict[str, Any]:
        wall = time.time() - started
        backend = synth.backend_info(self.settings)
        if run.backend_used and self._backend is not None:
            backend.update(self._backend.describe())
        return {
            "stage": self.ctx.stage.name,
            "axes": self.ctx.axes,
            "shard": {"index": run.index, "count": run.count, "documents": [d["doc_id"] for d in docs]},
            "fingerprint": self.fingerprint,
            "model": self.model,
            "backend": backend,
            "sampling": {name: s.as_dict() for name, s in outcome.sampling.items()},
            "seed": self.ctx.p("seed"),
            "prompts": {name: prompts.digest(name) for name in outcome.prompts},
            "counts": {
                "requested": outcome.requested,
                "accepted": len(outcome.records),
                "rejected": len(outcome.rejected),
                "rejected_by_reason": dict(Counter(r["reason"] for r in outcome.rejected)),
                "steps_rejected": len(outcome.step_rejected),
                "requests": run.requests,
                "resumed": run.resumed,
                **outcome.counts,
            },
            "rejected": outcome.rejected,
            "steps_rejected": outcome.step_rejected,
            "generation": _generation(
                {
                    "requests": run.requests,
                    "prompt_tokens": run.prompt_tokens,
                    "completion_tokens": run.completion_tokens,
                    "resumed": run.resumed,
                    "generated": run.generated,
                    "generated_tokens": run.generated_tokens,
                    "seconds": run.generation_seconds,
                }
            ),
            "wall_seconds": round(wall, 2),
            "provenance": self.ctx.provenance(),
        }

    def run(self) -> None:
        shard = self.ctx.shard
        if shard is not None:
            if not 0 <= shard < self.count:
                raise SystemExit(f"--shard {shard} is out of range: {R.SHARDS_KEY} = {self.count}")
            if self.sealed(shard) is None:
                self.generate_shard(shard)
            return
        started = time.time()
        manifests = []
        for index in range(self.count):
            manifest = self.sealed(index)
            if manifest is None:
                manifest = self.generate_shard(index)
            else:
                self.ctx.log.info("shard %d/%d already complete", index + 1, self.count)
            manifests.append(manifest)
        self.merge(manifests, started)

    def merge(self, manifests: list[dict[str, Any]], started: float) -> None:
        """All shards' records in document order, and one manifest summing theirs; then the shard files go."""
        records = [r for i in range(self.count) for r in io.read_jsonl(self.paths(i)["records"])]
        records.sort(key=lambda r: r["doc_id"])
        rejected = sorted((r for m in manifests for r in m["rejected"]), key=lambda r: r["doc_id"])
        steps = sorted((r for m in manifests for r in m["steps_rejected"]), key=lambda r: r["doc_id"])
        counts: Counter[str] = Counter()
        by_reason: Counter[str] = Counter()
        for m in manifests:
            counts.update({k: v for k, v in m["counts"].items() if isinstance(v, int)})
            by_reason.update(m["counts"]["rejected_by_reason"])
        generation: Counter[str] = Counter()
        for m in manifests:
            generation.update({k: v for k, v in m["generation"].items() if k != "completion_tokens_per_s"})
        first = manifests[0]
        io.write_jsonl(self.ctx.outputs[self.records_output], records)
        io.write_json(
            self.ctx.outputs["manifest"],
            {
                "stage": self.ctx.stage.name,
                "axes": self.ctx.axes,
                "model": self.model,
                "backend": first["backend"],
                "sampling": first["sampling"],
                "seed": first["seed"],
                "prompts": first["prompts"],
                "counts": {**dict(counts), "rejected_by_reason": dict(by_reason)},
                "rejected": rejected,
                "steps_rejected": steps,
                "generation": _generation(dict(generation)),
                "wall_seconds": round(sum(m["wall_seconds"] for m in manifests), 2),
                "merge_seconds": round(time.time() - started, 2),
                "shards": [
                    {
                        "index": m["shard"]["index"],
                        "documents": len(m["shard"]["documents"]),
                        "fingerprint": m["fingerprint"],
                        "counts": {k: m["counts"][k] for k in ("requested", "accepted", "rejected", "resumed")},
                        "wall_seconds": m["wall_seconds"],
                        "completion_tokens_per_s": m["generation"]["completion_tokens_per_s"],
                    }
                    for m in manifests
                ],
                "provenance": self.ctx.provenance(),
            },
        )
        shard_dir = self.paths(0)["records"].parent
        shutil.rmtree(shard_dir, ignore_errors=True)
        folder = shard_dir.parent
        while "shards" in folder.parts and folder.is_dir() and not any(folder.iterdir()):
            folder.rmdir()
            folder = folder.parent
        self.ctx.log.info(
            "%s: %d records from %d shards (%d rejected)",
            R.instance_id(self.ctx.stage, self.ctx.axes),
            len(records),
            self.count,
            len(rejected),
        )


def run(ctx: StageContext, produce: Callable[[ShardRun], synth.Outcome], records: str) -> None:
    Engine(ctx, produce, records).run()
