"""Text generation behind one interface, with per-item seeds.

Each request carries its own seed (derived from the run seed, document id, generator and index), and
sampling draws from a per-item random generator, so what an item gets does not depend on which batch or
shard it lands in. Three backends implement `Backend`: transformers (smt/backends/transformers.py; CPU or
GPU), vLLM offline (smt/backends/vllm.py) and an OpenAI-compatible HTTP endpoint (smt/backends/http.py);
`smt.synth.backends.make_backend` picks one from `generation.backend`.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from smt.inference import fast_bf16


def item_seed(seed: int, *parts: object) -> int:
    """A 63-bit seed from the run seed and an item's identity."""
    blob = "\x1f".join(str(p) for p in (seed, *parts)).encode()
    return int.from_bytes(hashlib.sha256(blob).digest()[:8], "big") >> 1


@dataclass(frozen=True)
class Sampling:
    temperature: float
    top_p: float
    max_new_tokens: int

    def as_dict(self) -> dict[str, Any]:
        return {"temperature": self.temperature, "top_p": self.top_p, "max_new_tokens": self.max_new_tokens}


@dataclass
class Request:
    key: str
    messages: list[dict[str, str]]
    seed: int
    prefill: str = ""  # text the assistant turn starts with (steers the output format)
    json_schema: dict[str, Any] | None = None  # the output must be a JSON value of this schema
    # chat-template variables of this request, over the backend's own (an OpenAI-compatible body's)
    chat_template_kwargs: dict[str, Any] = field(default_factory=dict)
    # A text prompt sent as is, without the chat template (`smt serve`'s /v1/completions; the transformers backend
    # only). The pipeline's requests are chats and leave it empty.
    prompt: str = ""

    def digest(self, sampling: Sampling) -> str:
        """What determines the completion (besides the model): a resumed run reuses a completion only if equal."""
        parts: list[Any] = [self.messages, self.prefill, self.seed, self.json_schema, sampling.as_dict()]
        if self.chat_template_kwargs:
            parts.append(self.chat_template_kwargs)
        if self.prompt:
            parts.append(self.prompt)
        blob = json.dumps(parts, sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]


def json_prefill(schema: dict[str, Any]) -> str:
    """For a backend without constrained decoding: start the answer as the schema's object must start (its first
    property), which steers a small model into JSON. Backends with structured outputs enforce the whole schema."""
    if schema.get("type") != "object" or not schema.get("properties"):
        return ""
    name, spec = next(iter(schema["properties"].items()))
    opening = {"string": '"', "array": "[", "object": "{"}.get(spec.get("type", ""), "")
    return "{" + json.dumps(name) + ": " + opening


@dataclass
class Completion:
    key: str
    text: str
    finish_reason: str  # stop | length | error
    prompt_tokens: int
    completion_tokens: int
    error: str = ""  # why this one request was refused (the item is then rejected, not the run)


@dataclass
class Stats:
    requests: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    seconds: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        rate = self.completion_tokens / self.seconds if self.seconds else 0.0
        return {
            "requests": self.requests,
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "seconds": round(self.seconds, 2),
            "completion_tokens_per_s": round(rate, 2),
            **self.extra,
        }


class Backend(Protocol):
    """What the synthetic-data stages need from a generator: completions for requests, and what it is."""

    name: str
    stats: Stats
    batch_size: int  # requests per call

    def generate(
        self,
        requests: list[Request],
        sampling: Sampling,
        desc: str = "generate",
        progress: bool = True,
        on_done: Callable[[Completion], None] | None = None,
    ) -> list[Completion]:
        """Completions in request order. `on_done` gets each completion as soon as the backend has it (a shard
        journals it there), so a crash in the middle of a call loses nothing already finished."""
        ...

    def describe(self) -> dict[str, Any]: ...


BACKENDS = ("transformers", "vllm", "http")


@dataclass(frozen=True)
class BackendSettings:
    """`generation.*` from params.yaml, plus the model folder the local backends load."""

    backend: str
    model_path: str
    dtype: str = "bfloat16"
    batch_size: int = 8
    vllm: dict[str, Any] = field(default_factory=dict)
    http: dict[str, Any] = field(default_factory=dict)
    chat_template_kwargs: dict[str, Any] = field(default_factory=dict)  # the model's chat-template variables

    def resolved(self) -> BackendSettings:
        """The same settings with `dtype: auto` resolved for this machine (the dtype that shapes completions)."""
        if self.dtype != "auto" or self.backend == "http":
            return self
        import torch

        cuda = torch.cuda.is_available()
        return dataclasses.replace(
            self, dtype=pick_dtype(self.dtype, config_dtype(self.model_path), cuda, fast_bf16(cuda))
        )


def context_error(prompt_tokens: int, max_new_tokens: int, context: int | None) -> str:
    """Why a request does not fit the model's context ('' when it does): its prompt and the new tokens it may
    write must fit, or the engine would fail (vLLM fails the whole call) or write past what the model knows."""
    if context is None or prompt_tokens + max_new_tokens <= context:
        return ""
    return (
        f"too long for the model: a prompt of {prompt_tokens} tokens + max_new_tokens {max_new_tokens} exceeds "
        f"its context of {context} tokens (split long documents: generation.section_tokens)"
    )


def reject(request: Request, error: str, prompt_tokens: int = 0) -> Completion:
    """The completion of a request refused before it ran: no text, the reason."""
    return Completion(request.key, "", "error", prompt_tokens, 0, error=error)


def config_dtype(model_path: str) -> str | None:
    """The dtype a model folder's config.json declares (`dtype`, or the older `torch_dtype`)."""
    config = Path(model_path) / "config.json"
    if not config.is_file():
        return None
    values = json.loads(config.read_text())
    values = values.get("text_config") or values
    return values.get("dtype") or values.get("torch_dtype")


def pick_dtype(requested: str, model_dtype: str | None, cuda: bool, bf16: bool) -> str:
    """`generation.dtype`: a named dtype as it is. `auto` on a CPU is bfloat16 where it has AMX-BF16 tiles (`bf16`)
    and float32 elsewhere (the transformers backend is batch invariant on a CPU in either,
    smt.synth.backends.transformers); on a GPU it is the model's own half-precision dtype: float16 for a float16
    model, otherwise bfloat16 where the GPU supports it (a float32 folder too), else float16."""
    if requested != "auto":
        return requested
    if not cuda:
        return "bfloat16" if bf16 else "float32"
    if model_dtype == "float16" or not bf16:
        return "float16"
    return "bfloat16"
