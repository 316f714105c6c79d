"""What every step that reads a model shares: the device and dtype it runs in, loading a causal LM there, and
the model's chat template rendered with the run's template variables.

A job sees the GPUs it holds (smt.pipeline.gpus sets CUDA_VISIBLE_DEVICES before torch loads); a model-reading
step runs on the first of them, in bfloat16 where the GPU supports it (`auto`), since a CPU-bound evaluation of an
8B student over thousands of questions is not feasible. On a CPU it runs in float32, which is faster there than
bfloat16 on CPUs without bf16 units and keeps the numbers bit-for-bit reproducible.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

DTYPES = ("auto", "float32", "bfloat16")


def pick(requested: str = "auto", cuda: bool | None = None, bf16: bool | None = None) -> tuple[str, str]:
    """(device, dtype): `auto` is bfloat16 on a GPU that supports it, float32 on any other GPU and on the CPU;
    a named dtype is used as it is."""
    if requested not in DTYPES:
        raise ValueError(f"dtype {requested!r}; allowed: {list(DTYPES)}")
    if cuda is None or bf16 is None:
        import torch

        cuda = torch.cuda.is_available() if cuda is None else cuda
        bf16 = bool(cuda and torch.cuda.is_bf16_supported()) if bf16 is None else bf16
    device = "cuda" if cuda else "cpu"
    if requested != "auto":
        return device, requested
    return device, "bfloat16" if cuda and bf16 else "float32"


def load_causal_lm(path: str, device: str, dtype: str) -> tuple[Any, Any]:
    """A causal LM in eval mode on `device` in `dtype`, and its tokenizer, from a local folder only."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
    model = AutoModelForCausalLM.from_pretrained(path, dtype=getattr(torch, dtype), local_files_only=True)
    return model.to(device).eval(), tokenizer


def describe(model: Any) -> dict[str, str]:
    """Where a loaded model runs: what every score file records."""
    parameter = next(model.parameters())
    return {"device": str(parameter.device), "dtype": str(parameter.dtype).removeprefix("torch.")}


def has_chat_template(tokenizer: Any) -> bool:
    return bool(getattr(tokenizer, "chat_template", None))


def render_chat(
    tokenizer: Any, messages: Sequence[dict[str, str]], template_kwargs: dict[str, Any] | None = None
) -> str:
    """The conversation as the model's chat template writes it, up to the opening of the assistant's turn, with
    the run's template variables (`models.<name>.chat_template_kwargs`, e.g. enable_thinking=False)."""
    return tokenizer.apply_chat_template(
        list(messages), tokenize=False, add_generation_prompt=True, **(template_kwargs or {})
    )
