"""Data-parallel generation: engine processes, each on its own devices, give the completions one engine gives."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from smt.synth.backends import make_single
from smt.synth.backends.pool import EnginePool, split
from smt.synth.generation import BackendSettings, Request, Sampling


def test_split_keeps_runs_contiguous_and_balanced() -> None:
    requests = [Request(str(i), [], i) for i in range(7)]
    runs = split(requests, 3)
    assert [[r.key for r in run] for run in runs] == [["0", "1", "2"], ["3", "4"], ["5", "6"]]
    assert [len(run) for run in split(requests[:1], 3)] == [1, 0, 0]


def test_two_engine_processes_return_what_one_engine_returns(base_model: Path) -> None:
    """Two CPU replicas (a GPU job gets one per device) in their own processes; float32 on a CPU is
    batch-invariant, so the split cannot change a completion."""
    settings = BackendSettings("transformers", str(base_model), "float32", 3)
    requests = [
        Request(f"r{i}", [{"role": "user", "content": f"Name a colour, number {i}."}], 100 + i) for i in range(5)
    ]
    sampling = Sampling(1.0, 0.95, 10)
    pool = EnginePool(settings, [[], []])
    try:
        assert pool.batch_size == 6  # a full batch for each engine per call
        described = pool.describe()
        assert described["engines"] == 2 and described["devices"] == ["cpu", "cpu"]
        pooled = pool.generate(requests, sampling)
        pids = {proc.pid for proc in pool._procs}
    finally:
        pool.close()
    alone = make_single(settings).generate(requests, sampling, progress=False)
    assert [(c.key, c.text, c.completion_tokens) for c in pooled] == [
        (c.key, c.text, c.completion_tokens) for c in alone
    ]
    assert pool.stats.requests == 5 and pool.stats.completion_tokens == sum(c.completion_tokens for c in alone)
    assert len(pids) == 2 and os.getpid() not in pids
    assert not pool._procs, "closing waits for the engine processes"


def test_an_engine_that_cannot_start_names_its_devices_and_the_error(tmp_path: Path) -> None:
    settings = BackendSettings("transformers", str(tmp_path / "no-model"), "float32", 2)
    with pytest.raises(RuntimeError, match=r"(?s)generation engine 0 \(devices \[\]\) failed:\n.*OSError.*no-model"):
        EnginePool(settings, [[]])
