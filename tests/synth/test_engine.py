"""The synthetic-data engine on the embedded default model: shards and batch size do not change the records, a
killed shard resumes without duplicates or gaps, every generator runs, and bad outputs are counted rejections."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import polars as pl
import pytest
import yaml
from helpers import deep_update, env, make_workspace, sh

from smt import artifacts, io
from smt.artifacts import model_identity
from smt.pipeline import graph as G
from smt.pipeline import stages as S
from smt.pipeline.runner import run_stage
from smt.synth.backends.http import EndpointError, HTTPBackend
from smt.synth.engine import assign
from smt.synth.generation import BackendSettings, Completion, Sampling
from smt.synth.generators import check_document
from smt.synth.generators.entigraph import entity_request, parse_entities
from smt.synth.journal import Partial, partial_identity

# Two documents, short outputs, one round of generation: every path of the engine runs, in seconds per stage on 2
# cores (rounds sized to a token target are tested in tests/synth/test_rounds.py and by the pipeline build).
TINY = {
    "ingest": {"max_documents": 2},
    "generation": {"batch_size": 4, "shards": 1, "max_rounds": 1},
    "mix": {"token_budgets": [40]},
    "synth_qa": {"per_request": 1, "per_document": 4, "temperature": 1.0, "max_new_tokens": 64},  # 8 requests
    "synth_docs": {
        "max_new_tokens": 32,
        "generators": {
            "active_reading": {"per_document": 1, "strategies_max_new_tokens": 24, "strategies_every": 4},
            "focal_rewrite": {
                "per_document": 1,
                "pairing": "grid",
                "strategies_max_new_tokens": 24,
                "strategies_every": 4,
            },
            "wrap": {"per_document": 1, "styles": ["qa"]},
            "entigraph": {
                "entities_max_new_tokens": 48,
                "max_entities": 4,
                "pairs_per_document": 1,
                "triples_per_document": 1,
            },
        },
    },
}
QA_REQUESTS = 2 * TINY["synth_qa"]["per_document"]  # two documents, one round


def set_params(ws: Path, changes: dict) -> None:
    params = yaml.safe_load((ws / "params.yaml").read_text())
    (ws / "params.yaml").write_text(yaml.safe_dump(deep_update(params, changes), sort_keys=False))


@pytest.fixture(scope="module")
def ws(base_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A workspace with the base model and two ingested documents; stages run in this process."""
    root = make_workspace(tmp_path_factory.mktemp("synth"), TINY)
    (root / "results/models/base").mkdir(parents=True)
    (root / "results/models/base/smollm2").symlink_to(base_model)
    cwd = os.getcwd()
    os.chdir(root)
    try:
        run_stage("ingest", {"benchmark": "demo"})
        yield root
    finally:
        os.chdir(cwd)


JOURNAL = "results/.journal/synth_qa@demo"


def forget(ws: Path) -> None:
    """Remove the QA stream's journal, so the next run generates everything again."""
    shutil.rmtree(ws / JOURNAL, ignore_errors=True)


def qa_output(ws: Path) -> tuple[list[dict], list[dict]]:
    """The QA stream's records and its rejected items (id, reason, text)."""
    return io.read_jsonl(ws / "results/synth/demo/qa.jsonl"), io.read_json(ws / QA_MANIFEST)["rejected"]


QA_MANIFEST = "results/synth/demo/qa.manifest.json"


@pytest.fixture(scope="module")
def qa_reference(ws: Path) -> tuple[list[dict], list[dict]]:
    """QA records and rejected items of one shard at batch size 4."""
    run_stage("synth_qa", {"benchmark": "demo"})
    records, rejected = qa_output(ws)
    assert records, "the reference run accepted no QA: focal rewriting and the comparisons would test nothing"
    return records, rejected


def test_records_do_not_depend_on_shards_or_the_requests_sharing_a_batch(
    ws: Path, qa_reference: tuple[list[dict], list[dict]]
) -> None:
    """Batches of 3 over 2 documents x 4 requests: in one shard a batch mixes both documents' prompts (different
    lengths, so padding); in two shards each document's last request decodes beside two idle lanes."""
    outputs = []
    for shards in (1, 2):
        set_params(ws, {"generation": {"batch_size": 3, "shards": shards}})
        forget(ws)
        try:
            run_stage("synth_qa", {"benchmark": "demo"})
        finally:
            set_params(ws, {"generation": {"batch_size": 4, "shards": 1}})
        outputs.append(qa_output(ws))
    assert outputs[0] == outputs[1] and outputs[0][0]
    manifest = io.read_json(ws / QA_MANIFEST)
    assert [s["documents"] for s in manifest["shards"]] == [1, 1]
    assert (
        manifest["counts"]["requested"]
        == QA_REQUESTS
        == manifest["counts"]["accepted"] + manifest["counts"]["rejected"]
    )
    assert manifest["model"]["id"] == "HuggingFaceTB/SmolLM2-135M-Instruct"
    assert manifest["model"]["revision"].startswith("sha256:")
    assert manifest["backend"]["name"] == "transformers" and manifest["backend"]["version"] == "5.19.0"
    assert manifest["sampling"]["qa"] == {"temperature": 1.0, "top_p": 1.0, "max_new_tokens": 64}
    generation = manifest["generation"]
    assert generation["completion_tokens"] == generation["generated_tokens"] > 0
    assert generation["completion_tokens_per_s"] > 0 and generation["requests"] == QA_REQUESTS
    assert not (ws / "results/synth/demo/shards").exists(), "merged shards are removed"


def _entries(partial: Path) -> int:
    return max(len(partial.read_text().splitlines()) - 1, 0) if partial.exists() else 0


def test_a_killed_shard_resumes_without_duplicates_or_gaps(ws: Path) -> None:
    """Killed after two journaled completions, the shard's rerun generates only the rest and writes what an
    uninterrupted run at the same batch size writes (a batch size is its own computation: the CPU's matmul kernels
    round by row count, smt.synth.backends.lanes)."""
    set_params(ws, {"generation": {"batch_size": 2, "shards": 1}})  # at most two completions saved per step
    cmd = [sys.executable, "-m", "smt", "synth_qa", "--benchmark", "demo", "--shard", "0"]
    partial = ws / JOURNAL / "0-of-1.jsonl"
    records = ws / "results/synth/demo/shards/qa/0.jsonl"
    try:
        forget(ws)
        sh(cmd, ws)  # uninterrupted, in a process of its own as the killed run is
        shard_manifest = records.with_suffix("").with_suffix(".manifest.json")
        uninterrupted = io.read_jsonl(records), io.read_json(shard_manifest)["rejected"]
        forget(ws)
        records.unlink()
        shard_manifest.unlink()
        proc = subprocess.Popen(cmd, cwd=ws, env=env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.time() + 600
        while _entries(partial) < 2 and proc.poll() is None and time.time() < deadline:
            time.sleep(0.05)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
        assert proc.returncode == -signal.SIGKILL, "the shard finished before it could be killed"
        done = _entries(partial)
        assert done == 2 and not records.exists()
        sh(cmd, ws)
        manifest = io.read_json(shard_manifest)
        assert manifest["counts"]["resumed"] == manifest["generation"]["resumed"] == done
        assert manifest["generation"]["generated"] == QA_REQUESTS - done
        assert _entries(partial) == QA_REQUESTS, "every completion stays in the journal"
        assert manifest["shard"]["documents"] == ["demo-01", "demo-02"]
        assert (io.read_jsonl(records), manifest["rejected"]) == uninterrupted
        run_stage("synth_qa", {"benchmark": "demo"})  # the merge: the shard is complete, nothing is generated
        assert qa_output(ws) == uninterrupted
        assert io.read_json(ws / QA_MANIFEST)["generation"]["generated"] == QA_REQUESTS - done
    finally:
        set_params(ws, {"generation": {"batch_size": 4, "shards": 1}})


def test_a_raised_target_generates_only_the_new_items(ws: Path, qa_reference: tuple[list[dict], list[dict]]) -> None:
    """More items per document (as a larger budget asks): the journal supplies the earlier ones."""
    run_stage("synth_qa", {"benchmark": "demo"})
    set_params(ws, {"synth_qa": {"per_document": 5}})
    try:
        run_stage("synth_qa", {"benchmark": "demo"})
        manifest = io.read_json(ws / QA_MANIFEST)
        records, _ = qa_output(ws)
    finally:
        set_params(ws, {"synth_qa": {"per_document": 4}})
    assert manifest["generation"]["resumed"] == QA_REQUESTS and manifest["generation"]["generated"] == 2
    assert {r["id"] for r in qa_reference[0]} <= {r["id"] for r in records}


def test_snakemake_runs_one_job_per_shard(ws: Path) -> None:
    set_params(ws, {"generation": {"shards": 3}})
    try:
        out = sh("snakemake -n --cores 2", ws).stdout
    finally:
        set_params(ws, {"generation": {"shards": 1}})
    jobs = dict(
        line.split()[:2] for line in out.splitlines() if line.startswith(("synth_qa_shard ", "synth_docs_shard "))
    )
    assert jobs == {"synth_qa_shard": "3", "synth_docs_shard": "12"}
    assert "python -m smt synth_qa --benchmark demo --shard 2" in out


KEY = "sk-test-7f3a9c"  # a made-up key: it must appear nowhere but in the server's and the client's memory


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_http_backend_against_a_local_server_gives_the_same_records(
    ws: Path, qa_reference: tuple[list[dict], list[dict]], monkeypatch: pytest.MonkeyPatch
) -> None:
    """`python -m smt serve` wraps the transformers backend; the stage through HTTP (started before the server
    is up, so it must retry) writes exactly the records of the direct run, and the key is never written."""
    port = _free_port()
    url = f"http://127.0.0.1:{port}/v1"
    monkeypatch.setenv("SMT_TEST_KEY", KEY)
    server_env = {**env(), "SMT_TEST_KEY": KEY}
    log = (ws / "results/logs/serve.log").open("w")
    cmd = ["serve", "--model", "results/models/base/smollm2", "--port", str(port), "--api-key-env", "SMT_TEST_KEY"]
    server = subprocess.Popen([sys.executable, "-m", "smt", *cmd], cwd=ws, env=server_env, stdout=log, stderr=log)
    http = {"base_url": url, "api_key_env": "SMT_TEST_KEY", "concurrency": 3, "backoff_seconds": 0.5, "max_retries": 9}
    set_params(ws, {"generation": {"backend": "http", "http": http}})
    try:
        run_stage("synth_qa", {"benchmark": "demo"})
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=10) as answer:
            health = json.loads(answer.read())
        monkeypatch.setenv("SMT_WRONG_KEY", "not-the-key")
        with pytest.raises(EndpointError, match="HTTP 401") as refused:
            HTTPBackend(url, api_key_env="SMT_WRONG_KEY", max_retries=0)
    finally:
        set_params(ws, {"generation": {"backend": "transformers"}})
        server.terminate()
        server.wait(timeout=30)
        log.close()
    assert qa_output(ws) == qa_reference
    manifest = io.read_json(ws / QA_MANIFEST)
    assert (
        manifest["backend"]["name"] == "http" and manifest["backend"]["model"] == "HuggingFaceTB/SmolLM2-135M-Instruct"
    )
    assert manifest["backend"]["retries"] >= 1, "the client started before the server was up"
    assert 1 <= health["peak_in_flight"] <= 3, "concurrency stays within generation.http.concurrency"
    assert "not-the-key" not in str(refused.value)
    for folder, dirs, files in os.walk(ws):
        dirs[:] = [d for d in dirs if d not in {"models", ".git", "tests"}]  # tests/: this file holds the key
        for name in files:
            assert KEY not in Path(folder, name).read_text(errors="ignore"), f"API key written to {folder}/{name}"


def seed_entity_step(ws: Path) -> tuple[str, list[str]]:
    """A 135M model seldom writes EntiGraph's entity JSON in full: put one document's entity step in the shard's
    journal, as a run killed after that step leaves it, so its pairs and triples are generated for real."""
    doc = pl.read_parquet(ws / "results/data/demo/documents.parquet").sort("doc_id").row(0, named=True)
    entities = [doc["title"], doc["author"], str(doc["year"])]
    request = entity_request(doc, seed=1234)
    sampling = Sampling(0.7, 0.95, TINY["synth_docs"]["generators"]["entigraph"]["entities_max_new_tokens"])
    settings = BackendSettings("transformers", "results/models/base/smollm2", "auto").resolved()  # as the stage runs
    partial = Partial(
        ws / "results/.journal/synth_docs@demo-entigraph/0-of-1.jsonl",
        partial_identity(
            settings,
            model_identity("results/models/base/smollm2")["revision"],
            artifacts.files_hash(G.stage_code(S.stage("synth_docs"), {"benchmark": "demo", "generator": "entigraph"})),
        ),
    )
    text = json.dumps({"summary": "A history.", "entities": entities})
    entry = {"key": request.key, "digest": request.digest(sampling), "text": text, "finish_reason": "stop"}
    partial.append([{**entry, "prompt_tokens": 500, "completion_tokens": 30}])
    return doc["doc_id"], entities


@pytest.mark.parametrize("generator", ["active_reading", "focal_rewrite", "wrap", "entigraph"])
def test_every_generator_runs_and_accounts_for_every_item(
    ws: Path, qa_reference: tuple[list[dict], list[dict]], generator: str
) -> None:
    seeded = seed_entity_step(ws) if generator == "entigraph" else None
    run_stage("synth_docs", {"benchmark": "demo", "generator": generator})
    records = io.read_jsonl(ws / f"results/synth/demo/docs/{generator}.jsonl")
    manifest = io.read_json(ws / f"results/synth/demo/docs/{generator}.manifest.json")
    counts = manifest["counts"]
    planned = {"entigraph": 2, "active_reading": 1, "focal_rewrite": 1, "wrap": 1}[generator] * 2
    assert counts["requested"] == counts["accepted"] + counts["rejected"] and counts["rounds"] == 1
    assert counts["requested"] == planned or (generator == "entigraph" and counts["requested"] <= planned)
    assert counts["accepted"] == len(records)
    assert sum(counts["rejected_by_reason"].values()) == counts["rejected"] == len(manifest["rejected"])
    assert all(r["generator"] == generator and r["text"] and r["id"].startswith(r["doc_id"]) for r in records)
    assert set(manifest["prompts"]) >= {generator}
    if generator == "focal_rewrite":
        asked = {r["question"] for r in qa_reference[0]}
        assert all(r["question"] in asked for r in records)
        docs_without = {"demo-01", "demo-02"} - {r["doc_id"] for r in qa_reference[0]}
        assert counts["rejected_by_reason"].get("no generated question for this document", 0) == len(docs_without)
    if seeded:
        doc_id, entities = seeded
        assert counts["resumed"] == 1 and set(manifest["sampling"]) == {"entities", "relations"}
        failed = {r["doc_id"]: r["reason"] for r in manifest["steps_rejected"]}
        unasked = [r for r in manifest["rejected"] if r["reason"].startswith("entity step")]
        assert all(
            r["reason"] == f"entity step failed: {failed[r['doc_id']]}" for r in unasked if r["doc_id"] in failed
        )
        assert doc_id not in failed and not any(r["doc_id"] == doc_id for r in unasked)
        asked = counts["requested"] - len(unasked)
        assert counts["requests"] == 2 + asked, "one entity request per document, then one per item"
        mine = [r for r in records if r["doc_id"] == doc_id]
        assert all(set(r["entities"]) <= set(entities) for r in mine)
        assert all(len(r["entities"]) == {"pair": 2, "triple": 3}[r["relation"]] for r in records)


@pytest.mark.parametrize(
    ("text", "finish", "expected"),
    [
        (
            '{"summary": "s", "entities": ["Mara Voss", "Port Calloway", "mara voss"]}',
            "stop",
            ["Mara Voss", "Port Calloway"],
        ),
        ('```json\n{"summary": "s", "entities": ["a", "b", "c"]}\n```', "stop", ["a", "b"]),
        ('{"summary": "s", "entities": ["a"', "length", "unparseable JSON"),
        ('{"summary": "s", "entities": ["only one"]}', "stop", "fewer than 2 entities"),
        ('{"summary": "s", "people": ["a", "b"]}', "stop", "unparseable JSON: no 'entities' list"),
        ("no json here", "stop", "unparseable JSON"),
    ],
)
def test_entity_parser(text: str, finish: str, expected: object) -> None:
    assert parse_entities(text, max_entities=2) == expected


@pytest.mark.parametrize(
    ("completion", "reason"),
    [
        (Completion("k", "", "stop", 5, 0), "empty"),
        (Completion("k", "  ", "length", 5, 3), "truncated at max_new_tokens"),
        (Completion("k", "too few words here", "length", 5, 4), "truncated at max_new_tokens"),
        (Completion("k", "too few words here", "stop", 5, 4), "too short (< 20 words)"),
        (
            Completion("k", "", "error", 0, 0, error="endpoint refused the request: too long"),
            "endpoint refused the request: too long",
        ),
        (Completion("k", " ".join(["word"] * 25), "length", 5, 40), None),
    ],
)
def test_malformed_documents_are_rejected_with_a_reason(completion: Completion, reason: str | None) -> None:
    assert check_document(completion) == reason


def entry(key: str) -> dict:
    return {"key": key, "digest": "d", "text": "x", "finish_reason": "stop", "prompt_tokens": 1, "completion_tokens": 1}


def test_partial_file_survives_a_torn_last_line(tmp_path: Path) -> None:
    partial = Partial(tmp_path / "0.partial.jsonl", {"model": "m"})
    partial.append([entry("a"), entry("b")])
    with partial.path.open("a") as fh:
        fh.write('{"key": "c", "dig')  # a kill in the middle of a write
    assert sorted(partial.load()) == ["a", "b"]
    partial.append([entry("c")])
    assert sorted(partial.load()) == ["a", "b", "c"]
    assert sorted(Partial(partial.path, {"model": "other"}).load()) == [], "another model's completions are stale"


def test_partial_file_from_other_code_is_discarded_and_the_log_says_why(tmp_path: Path) -> None:
    """A killed run, then a fix in a generator or backend: the rerun must not mix old and new completions."""
    partial = Partial(tmp_path / "0.partial.jsonl", {"model": "m", "code": {"smt/generation.py": "aaaa"}})
    partial.append([entry("a")])
    said: list[str] = []
    fixed = Partial(partial.path, {"model": "m", "code": {"smt/generation.py": "bbbb"}}, said.append)
    assert fixed.load() == {} and not partial.path.exists()
    assert len(said) == 1 and "changed: code" in said[0]


def test_documents_are_dealt_round_robin() -> None:
    docs = [{"doc_id": f"d{i}"} for i in range(5)]
    assert [d["doc_id"] for d in assign(docs, 1, 2)] == ["d1", "d3"]
    assert sorted(d["doc_id"] for i in range(3) for d in assign(docs, i, 3)) == [f"d{i}" for i in range(5)]
