"""vLLM offline inference (GPU): `LLM.generate` over token-id prompts with one `SamplingParams` per request.

Prompts are rendered with the model's chat template, so the document, which every prompt file places first,
forms a shared prefix that vLLM's prefix cache reuses across a document's requests. Each request carries its
own seed; a request with a JSON schema gets vLLM's structured outputs (`StructuredOutputsParams(json=...)`),
so a generator that needs JSON gets valid JSON. Written for vllm==0.33.0 (envs/requirements-gpu.txt).

One engine runs on the devices this process sees, with the tensor-parallel size the caller chose
(smt.synth.backends.layout: it divides the model's heads; several engines run in a pool). vLLM batches
requests as they come, so a completion depends on what else is in flight unless its batch-invariant kernels are
on (`generation.vllm.batch_invariant`: VLLM_BATCH_INVARIANT=1 for the engine, NVIDIA compute capability 8.0 or
later, slower); then a request's completion does not depend on the batch, the shard count or the other requests.

vLLM fails a whole `generate` call on one prompt longer than its context, so a request whose prompt and
max_new_tokens do not fit (`max_model_len`, else the model's `max_position_embeddings`) is refused before the call:
its completion is an error with the reason, and the item is rejected, not the shard.
"""

from __future__ import annotations

import importlib
import os
import time
from collections.abc import Callable
from typing import Any

from smt.inference import render_chat
from smt.synth.generation import Completion, Request, Sampling, Stats, context_error, reject


def _vllm() -> Any:
    try:
        return importlib.import_module("vllm")
    except ImportError as exc:
        raise RuntimeError(
            "generation.backend = 'vllm' needs the vllm package (GPU environment: "
            "pip install -r envs/requirements-gpu.txt)"
        ) from exc


BATCH_INVARIANT_VAR = "VLLM_BATCH_INVARIANT"  # read by vLLM's engine processes (vllm/envs.py)


class VLLMBackend:
    """vLLM's offline engine; `engine` lets a caller hand in an already built `LLM`."""

    name = "vllm"

    def __init__(
        self,
        model_path: str,
        dtype: str = "bfloat16",
        batch_size: int = 256,
        tensor_parallel_size: int = 1,
        gpu_memory_utilization: float = 0.9,
        max_model_len: int = 0,
        batch_invariant: bool = False,
        engine: Any = None,
        chat_template_kwargs: dict[str, Any] | None = None,
    ) -> None:
        from transformers import AutoConfig, AutoTokenizer

        os.environ[BATCH_INVARIANT_VAR] = "1" if batch_invariant else "0"  # before vLLM starts its engine
        self.batch_invariant = batch_invariant
        self.vllm = _vllm()
        self.tokenizer = AutoTokenizer.from_pretrained(model_path)
        self.chat_template_kwargs = dict(chat_template_kwargs or {})
        config = AutoConfig.from_pretrained(model_path)
        self.context = max_model_len or getattr(getattr(config, "text_config", config), "max_position_embeddings", None)
        self.batch_size = batch_size
        self.tensor_parallel_size = tensor_parallel_size
        self.engine_args: dict[str, Any] = {
            "model": model_path,
            "tokenizer": model_path,
            "dtype": dtype,
            "tensor_parallel_size": self.tensor_parallel_size,
            "gpu_memory_utilization": gpu_memory_utilization,
            "enable_prefix_caching": True,
            "seed": 0,
        }
        if max_model_len:
            self.engine_args["max_model_len"] = max_model_len
        self.llm = engine if engine is not None else self.vllm.LLM(**self.engine_args)
        self.stats = Stats()

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "version": getattr(self.vllm, "__version__", "unknown"),
            "tensor_parallel_size": self.tensor_parallel_size,
            "prefix_caching": True,
            "dtype": self.engine_args["dtype"],
            "batch_invariant": self.batch_invariant,
            "structured_outputs": "StructuredOutputsParams(json=schema)",
            "context": self.context,
            **({"chat_template_kwargs": self.chat_template_kwargs} if self.chat_template_kwargs else {}),
        }

    def prompt_ids(self, request: Request) -> list[int]:
        text = render_chat(
            self.tokenizer, request.messages, {**self.chat_template_kwargs, **request.chat_template_kwargs}
        )
        return self.tokenizer(text + request.prefill, add_special_tokens=False).input_ids

    def sampling_params(self, request: Request, sampling: Sampling) -> Any:
        structured = None
        if request.json_schema is not None:
            params_module = importlib.import_module("vllm.sampling_params")
            structured = params_module.StructuredOutputsParams(json=request.json_schema)
        return self.vllm.SamplingParams(
            temperature=sampling.temperature,
            top_p=sampling.top_p,
            max_tokens=sampling.max_new_tokens,
            seed=request.seed,
            structured_outputs=structured,
            skip_special_tokens=True,
        )

    def generate(
        self,
        requests: list[Request],
        sampling: Sampling,
        desc: str = "generate",
        progress: bool = True,
        on_done: Callable[[Completion], None] | None = None,
    ) -> list[Completion]:
        """One engine call for all requests: vLLM schedules them itself (continuous batching). The offline engine
        returns completions only when the call ends, so they reach `on_done` then (a shard bounds what a crash
        can lose with the call's size, `generation.batch_size`)."""
        started = time.perf_counter()
        ids = {r.key: self.prompt_ids(r) for r in requests}
        refused = {}
        for r in requests:
            error = context_error(len(ids[r.key]), sampling.max_new_tokens, self.context)
            if error:
                refused[r.key] = reject(r, error, len(ids[r.key]))
                if on_done is not None:
                    on_done(refused[r.key])
        runnable = [r for r in requests if r.key not in refused]
        prompts = [{"prompt_token_ids": ids[r.key]} for r in runnable]
        params = [self.sampling_params(r, sampling) for r in runnable]
        outputs = self.llm.generate(prompts, params, use_tqdm=progress) if runnable else []
        completions = list(refused.values())
        for request, prompt, output in zip(runnable, prompts, outputs, strict=True):
            best = output.outputs[0]
            reason = "length" if best.finish_reason == "length" else "stop"
            n_prompt = len(output.prompt_token_ids or prompt["prompt_token_ids"])
            completions.append(
                Completion(request.key, request.prefill + best.text, reason, n_prompt, len(best.token_ids))
            )
            self.stats.prompt_tokens += n_prompt
            self.stats.completion_tokens += len(best.token_ids)
            if on_done is not None:
                on_done(completions[-1])
        self.stats.requests += len(requests)
        self.stats.seconds += time.perf_counter() - started
        by_key = {c.key: c for c in completions}
        return [by_key[r.key] for r in requests]
