"""How a generation job's GPUs are split into engines: tensor parallel within an engine, data parallel across.

vLLM shards attention heads over its tensor-parallel ranks, so the TP size must divide the model's attention
heads, and its KV heads must either divide by it or divide it (then each KV head is replicated). The layout
takes the largest TP size that fits the model and divides the GPUs the job holds, and runs one engine per group
of that many GPUs (data parallel, requests split among them). The transformers backend runs one replica per GPU.
An explicit `generation.vllm.tensor_parallel_size` is checked the same way; GPUs left over idle, and the log
says so.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path


class LayoutError(ValueError):
    """The model's head counts and the GPUs held admit no engine of the requested size."""


@dataclass(frozen=True)
class Heads:
    attention: int
    kv: int
    intermediate: int = 0  # MLP width, split by the same TP size (0: unknown, not checked)


def read_heads(model: str | Path) -> Heads:
    """Head counts from a Hugging Face folder's config.json (a multimodal config's `text_config`)."""
    config = json.loads((Path(model) / "config.json").read_text())
    config = config.get("text_config") or config
    heads = int(config["num_attention_heads"])
    return Heads(heads, int(config.get("num_key_value_heads") or heads), int(config.get("intermediate_size") or 0))


def fits(tp: int, heads: Heads) -> bool:
    """vLLM can shard this model over `tp` ranks."""
    kv_ok = heads.kv % tp == 0 or tp % heads.kv == 0
    mlp_ok = heads.intermediate == 0 or heads.intermediate % tp == 0
    return heads.attention % tp == 0 and kv_ok and mlp_ok


@dataclass(frozen=True)
class Layout:
    tensor_parallel: int  # GPUs per engine
    engines: int  # engines, each on its own GPUs (data parallel)
    idle: int  # GPUs held but unused

    def groups(self, devices: list[str]) -> list[list[str]]:
        """The devices of each engine (an empty list: no GPU, the CPU)."""
        if not devices:
            return [[] for _ in range(self.engines)]
        return [devices[i * self.tensor_parallel : (i + 1) * self.tensor_parallel] for i in range(self.engines)]

    def describe(self, gpus: int) -> str:
        text = f"{self.engines} engine(s) x tensor parallel {self.tensor_parallel} on {gpus} GPU(s)"
        return text + (f"; {self.idle} GPU(s) idle" if self.idle else "")


def vllm_layout(heads: Heads, gpus: int, requested: int = 0) -> Layout:
    """`requested` 0: the largest TP size that fits the model and divides the GPUs held, and as many engines as
    the GPUs allow. Otherwise exactly that TP size, checked against the heads and the GPUs."""
    if requested:
        if not fits(requested, heads):
            raise LayoutError(
                f"generation.vllm.tensor_parallel_size = {requested} does not divide the model's "
                f"{heads.attention} attention heads ({heads.kv} KV heads, MLP width {heads.intermediate}); "
                f"sizes that fit: {[t for t in range(1, max(gpus, 1) + 1) if fits(t, heads)]}, or 0 to choose"
            )
        if gpus and requested > gpus:
            raise LayoutError(
                f"generation.vllm.tensor_parallel_size = {requested} but the job holds {gpus} GPU(s); give the "
                "generation shard jobs more GPUs in the profile or lower the size (0 chooses)"
            )
        engines = max(gpus // requested, 1)
        return Layout(requested, engines, gpus - engines * requested if gpus else 0)
    if gpus <= 1:
        return Layout(1, 1, 0)
    tp = max(t for t in range(1, gpus + 1) if gpus % t == 0 and fits(t, heads))
    return Layout(tp, gpus // tp, 0)


def replica_layout(gpus: int) -> Layout:
    """The transformers backend: one model replica per GPU held (one on the CPU without a GPU)."""
    return Layout(1, max(gpus, 1), 0)


def job_devices() -> list[str]:
    """The CUDA devices this process may use, as CUDA_VISIBLE_DEVICES names them (indices or UUIDs)."""
    import torch

    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    named = [d.strip() for d in os.environ.get("CUDA_VISIBLE_DEVICES", "").split(",") if d.strip()]
    return named[:count] if len(named) >= count and named else [str(i) for i in range(count)]
