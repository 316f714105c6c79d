"""Sharded, resumable generation: the engine every synthetic-data stage runs on.

A stage instance's documents (sorted by id) are dealt round-robin into `count` shards. Under Snakemake one job
runs each shard; the stage's own command runs every shard that is not complete yet, then merges them in document
order (under DVC it does all of it). Records do not depend on the shard count or the batch size: every request
has its own seed, and records are merged in document order.

Each finished completion goes to the stream's journal (smt.synth.journal) as soon as it is done, so a rerun
after a crash or a kill generates only the rest. A shard completes atomically: its records, then its manifest,
which holds the fingerprint of everything the shard depends on. A complete shard whose fingerprint no longer
matches is generated again, from the journal where it can (a raised token target adds only the new items); after
a merge the shard files are removed, and the journal stays.
"""

from __future__ import annotations

import dataclasses
import logging
import shutil
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from smt import faults, io, prompts
from smt.synth import collect, journal, sections
from smt.synth.backends import make_backend
from smt.synth.generation import Backend, BackendSettings
from smt.synth.job import Job
from smt.synth.shard import ShardRun


@dataclass
class Plan:
    """Everything the engine needs about one stage instance, in plain values (the stage adapter builds it)."""

    stage: str
    axes: dict[str, str]
    label: str  # the instance, for logs and progress bars
    documents: list[dict[str, Any]]  # the units generators work on (documents or their sections), sorted by id
    count: int  # shards
    job: Job  # documents and completion function filled in per shard
    settings: BackendSettings
    model: dict[str, Any]  # id and revision of the generator (smt.artifacts.model_identity)
    code: dict[str, str]  # content hashes of the stage's code, for the journal's identity
    fingerprint: str  # of everything the records depend on
    shard_outputs: Callable[[int], dict[str, str]]  # records and manifest of shard i
    journal: str  # the folder of the stream's journal (smt.synth.journal), kept across runs
    records: str  # the merged records file
    manifest: str  # the merged manifest
    provenance: dict[str, Any]
    log: logging.Logger


def document_order(entry: dict[str, Any]) -> tuple[str, int]:
    """Merged records in document order, a document's sections in order (they may come from several shards)."""
    return entry["doc_id"], entry.get("section", 0)


def assign(docs: list[dict[str, Any]], index: int, count: int) -> list[dict[str, Any]]:
    """The documents of shard `index` of `count` (round-robin over documents sorted by id)."""
    return docs[index::count]


class Engine:
    """Runs the shards of one stage instance (all of them, or one) and merges them."""

    def __init__(self, plan: Plan, produce: Callable[[Job], collect.Outcome]) -> None:
        self.plan = plan
        self.produce = produce
        self._backend: Backend | None = None

    def backend(self) -> Backend:
        if self._backend is None:
            self._backend = make_backend(self.plan.settings)
            self.plan.log.info("backend: %s", self._backend.describe())
        return self._backend

    def paths(self, index: int) -> dict[str, Path]:
        found = {k: Path(v) for k, v in self.plan.shard_outputs(index).items()}
        found["partial"] = Path(self.plan.journal) / f"{index}-of-{self.plan.count}.jsonl"
        return found

    def sealed(self, index: int) -> dict[str, Any] | None:
        """The manifest of a complete shard made from the same params, inputs and code, else None."""
        paths = self.paths(index)
        if not (paths["manifest"].exists() and paths["records"].exists()):
            return None
        try:  # an empty or foreign file (say, one `snakemake --touch` created) is no complete shard
            manifest = io.read_json(paths["manifest"])
            if manifest.get("fingerprint") != self.plan.fingerprint:
                return None
            if len(io.read_jsonl(paths["records"])) != manifest["counts"]["accepted"]:
                return None
        except (ValueError, KeyError, TypeError, AttributeError):
            return None
        return manifest

    def generate_shard(self, index: int) -> dict[str, Any]:
        plan = self.plan
        started = time.time()
        paths = self.paths(index)
        docs = assign(plan.documents, index, plan.count)
        settings = plan.settings.resolved()  # `dtype: auto` as this machine runs it
        identity = journal.partial_identity(settings, plan.model["revision"], plan.code)
        label = f"{plan.label} shard {index + 1}/{plan.count}"
        run = ShardRun(label, journal.Partial(paths["partial"], identity, plan.log.info), self.backend, plan.log)
        outcome = self.produce(dataclasses.replace(plan.job, documents=docs, complete=run.complete))
        outcome.records = sections.restore(outcome.records, docs)  # each record: its document and section
        outcome.rejected = sections.restore(outcome.rejected, docs)
        outcome.step_rejected = sections.restore(outcome.step_rejected, docs)
        manifest = self._manifest(run, index, outcome, docs, started)
        io.write_jsonl(paths["records"], outcome.records)
        faults.point("generation.shard_records")
        io.write_json(paths["manifest"], manifest)
        faults.point("generation.shard_manifest")
        plan.log.info(
            "%s: %d accepted, %d rejected (%d completions resumed)",
            label,
            len(outcome.records),
            len(outcome.rejected),
            run.resumed,
        )
        return manifest

    def _manifest(
        self, run: ShardRun, index: int, outcome: collect.Outcome, docs: list[dict[str, Any]], started: float
    ) -> dict[str, Any]:
        plan = self.plan
        backend = collect.backend_info(plan.settings)
        if run.backend_used and self._backend is not None:
            backend.update(self._backend.describe())
        return {
            "stage": plan.stage,
            "axes": plan.axes,
            "shard": {"index": index, "count": plan.count, "documents": [d["doc_id"] for d in docs]},
            "fingerprint": plan.fingerprint,
            "model": plan.model,
            "backend": backend,
            "sampling": {name: s.as_dict() for name, s in outcome.sampling.items()},
            "seed": plan.job.seed,
            "prompts": {name: prompts.digest(name) for name in outcome.prompts},
            "counts": {
                "requested": outcome.requested,
                "accepted": len(outcome.records),
                "rejected": len(outcome.rejected),
                "rejected_by_reason": dict(Counter(r["reason"] for r in outcome.rejected)),
                "steps_rejected": len(outcome.step_rejected),
                "requests": run.requests,
                "resumed": run.resumed,
                "journal_entries_skipped": run.skipped,
                **outcome.counts,
            },
            "rejected": outcome.rejected,
            "steps_rejected": outcome.step_rejected,
            "generation": collect.generation_summary(
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
            "wall_seconds": round(time.time() - started, 2),
            "provenance": plan.provenance,
        }

    def run_shard(self, index: int) -> None:
        """One shard only (Snakemake's `<stage>_shard` job), unless it is complete already."""
        if not 0 <= index < self.plan.count:
            raise SystemExit(f"--shard {index} is out of range: there are {self.plan.count} shards")
        if self.sealed(index) is None:
            self.generate_shard(index)

    def run(self) -> None:
        """Every shard that is not complete yet, then the merge."""
        started = time.time()
        manifests = []
        for index in range(self.plan.count):
            manifest = self.sealed(index)
            if manifest is None:
                manifest = self.generate_shard(index)
            else:
                self.plan.log.info("shard %d/%d already complete", index + 1, self.plan.count)
            manifests.append(manifest)
        self.merge(manifests, started)

    def merge(self, manifests: list[dict[str, Any]], started: float) -> None:
        """All shards' records in document order, and one manifest summing theirs; then the shard files go."""
        plan = self.plan
        records = [r for i in range(plan.count) for r in io.read_jsonl(self.paths(i)["records"])]
        records.sort(key=document_order)
        rejected = sorted((r for m in manifests for r in m["rejected"]), key=document_order)
        steps = sorted((r for m in manifests for r in m["steps_rejected"]), key=document_order)
        counts: Counter[str] = Counter()
        by_reason: Counter[str] = Counter()
        generation: Counter[str] = Counter()
        for m in manifests:
            counts.update({k: v for k, v in m["counts"].items() if isinstance(v, int)})
            by_reason.update(m["counts"]["rejected_by_reason"])
            generation.update({k: v for k, v in m["generation"].items() if k != "completion_tokens_per_s"})
        first = manifests[0]
        io.write_jsonl(plan.records, records)
        faults.point("generation.merged_records")
        io.write_json(
            plan.manifest,
            {
                "stage": plan.stage,
                "axes": plan.axes,
                "model": plan.model,
                "backend": first["backend"],
                "sampling": first["sampling"],
                "seed": first["seed"],
                "prompts": first["prompts"],
                "counts": {**dict(counts), "rejected_by_reason": dict(by_reason)},
                "rejected": rejected,
                "steps_rejected": steps,
                "generation": collect.generation_summary(dict(generation)),
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
                "provenance": plan.provenance,
            },
        )
        shard_dir = self.paths(0)["records"].parent
        shutil.rmtree(shard_dir, ignore_errors=True)
        folder = shard_dir.parent
        while "shards" in folder.parts and folder.is_dir() and not any(folder.iterdir()):
            folder.rmdir()
            folder = folder.parent
        plan.log.info(
            "%s: %d records from %d shards (%d rejected)", plan.label, len(records), plan.count, len(rejected)
        )
