"""What every step that reads a model shares: the device and dtype it runs in, loading a causal LM there, and
the model's chat template rendered with the run's template variables.

A job sees the GPUs it holds (smt.pipeline.gpus sets CUDA_VISIBLE_DEVICES before torch loads); a model-reading
step runs on the first of them, in bfloat16 where the GPU supports it (`auto`), since a CPU-bound evaluation of an
8B student over thousands of questions is not feasible. On a CPU `auto` is bfloat16 where the CPU has AMX-BF16 tiles
(Intel Xeon 4th generation and later: measured on 2 cores, bfloat16 matmuls at the 135M model's shapes run 2-6x
faster than float32, a 1,000-token prefill 1.9x), and float32 on every other CPU, where bfloat16 is emulated and
slower. Either way a machine gives the same numbers on every run; the dtype is recorded next to every score.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from pathlib import Path
from typing import Any

DTYPES = ("auto", "float32", "bfloat16")


@functools.cache
def cpu_bf16_tiles(cpuinfo: str = "/proc/cpuinfo") -> bool:
    """Whether this CPU has AMX-BF16 tiles, where oneDNN runs bfloat16 matmuls several times faster than float32."""
    try:
        text = Path(cpuinfo).read_text()
    except OSError:
        return False
    return any(line.startswith("flags") and " amx_bf16" in line for line in text.splitlines())


def fast_bf16(cuda: bool) -> bool:
    """Whether the device this process runs on has fast bfloat16: a GPU that supports it, or a CPU with AMX-BF16."""
    import torch

    return bool(torch.cuda.is_bf16_supported()) if cuda else cpu_bf16_tiles()


def pick(requested: str = "auto", cuda: bool | None = None, bf16: bool | None = None) -> tuple[str, str]:
    """(device, dtype): `auto` is bfloat16 where the device has fast bfloat16 (`bf16`: a GPU that supports it, a
    CPU with AMX-BF16), float32 elsewhere; a named dtype is used as it is."""
    if requested not in DTYPES:
        raise ValueError(f"dtype {requested!r}; allowed: {list(DTYPES)}")
    if cuda is None:
        import torch

        cuda = torch.cuda.is_available()
    if bf16 is None:
        bf16 = fast_bf16(cuda)
    device = "cuda" if cuda else "cpu"
    if requested != "auto":
        return device, requested
    return device, "bfloat16" if bf16 else "float32"


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


def pad_token_id(tokenizer: Any) -> int:
    """The id to pad with: the pad token, else end-of-sequence (padding is masked out either way)."""
    for value in (tokenizer.pad_token_id, tokenizer.eos_token_id):
        if value is not None:
            return int(value)
    return 0


def next_token_logprobs(model: Any, tokenizer: Any, texts: Sequence[str]) -> Any:
    """Log-probabilities of the next token after each text (float32, on the CPU), one left-padded pass. Texts
    longer than the model's positions lose tokens on the left (the question and options are at the end)."""
    import torch

    device = next(model.parameters()).device
    special = not has_chat_template(tokenizer)
    limit = getattr(model.config, "max_position_embeddings", None)
    encoded = [tokenizer(t, add_special_tokens=special)["input_ids"] for t in texts]
    encoded = [ids[-limit:] if limit else ids for ids in encoded]
    length = max(len(ids) for ids in encoded)
    input_ids = torch.full((len(texts), length), pad_token_id(tokenizer), dtype=torch.long)
    mask = torch.zeros((len(texts), length), dtype=torch.long)
    for row, ids in enumerate(encoded):
        input_ids[row, length - len(ids) :] = torch.tensor(ids, dtype=torch.long)
        mask[row, length - len(ids) :] = 1
    positions = (mask.cumsum(-1) - 1).clamp(min=0)
    with torch.inference_mode():
        logits = model(
            input_ids=input_ids.to(device),
            attention_mask=mask.to(device),
            position_ids=positions.to(device),
            logits_to_keep=1,
        ).logits[:, -1, :]
    return torch.log_softmax(logits.float(), dim=-1).cpu()
