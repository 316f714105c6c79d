"""Prompts that begin alike are prefilled alike once: chunked prefill with the chunks' KV states kept.

Active Reading, Focal Rewriting and the QA stream put the document first and the instruction after it, so a
document's requests share most of their prompt tokens (Focal Rewriting's differ only in the strategy and question
at the end). A prompt is prefilled in chunks of `chunk` tokens from its first position, and every full chunk's keys
and values are kept under the token ids up to its end; a later prompt starting with the same ids takes those
chunks and prefills only the rest.

Exactness: a chunk is computed from its own token ids and the states of the chunks before it, the same values in
the same contiguous layout whether those came from the cache or were just computed, so a prompt's states (and the
completion drawn from them) do not depend on which prompts ran before it (tested bitwise). Chunking itself is part
of the computation: its states differ in the last bits from a one-pass prefill's, and `chunk` is recorded with the
backend.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from transformers.cache_utils import DynamicCache

from smt.synth.backends.kvcache import BoundedCache, PromptState

CHUNK = 128  # tokens per prefill chunk: a document's prompts share all but the chunk their own text begins in


@dataclass
class Chunk:
    """One chunk's states: per layer keys and values ([1, kv heads, chunk, head dim])."""

    keys: list[torch.Tensor]
    values: list[torch.Tensor]

    @property
    def nbytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in (*self.keys, *self.values))


class PrefixCache:
    """Token ids up to a chunk's end -> that chunk's states, least recently used first out, `max_bytes` at most."""

    def __init__(self, max_bytes: int, chunk: int = CHUNK) -> None:
        self.chunk = chunk
        self.store = BoundedCache(max_bytes)
        self.reused_tokens = self.computed_tokens = 0

    @torch.inference_mode()
    def prefill(self, model: torch.nn.Module, ids: torch.Tensor) -> PromptState:
        """The states and next-token logits of one prompt (`ids`: [1, length]), chunk by chunk, taking every
        leading chunk another prompt already computed."""
        length = ids.shape[1]
        flat = ids[0].cpu().numpy()
        chunks: list[Chunk] = []
        start = 0
        while start + self.chunk < length:  # the last chunk is computed: its logits are the prompt's
            found = self.store.get(flat[: start + self.chunk].tobytes())
            if found is None:
                break
            chunks.append(found)
            start += self.chunk
        self.reused_tokens += start
        self.computed_tokens += length - start
        past = None
        if chunks:  # the cached chunks as one cache; the chunks computed below grow it as a one-pass prefill would
            past = DynamicCache()
            for layer in range(len(chunks[0].keys)):
                keys = torch.cat([c.keys[layer] for c in chunks], dim=-2)
                past.update(keys, torch.cat([c.values[layer] for c in chunks], dim=-2), layer)
        logits = None
        while start < length:
            end = min(start + self.chunk, length)
            out = model(input_ids=ids[:, start:end], past_key_values=past, use_cache=True, logits_to_keep=1)
            past = out.past_key_values
            chunk = Chunk(
                [x.keys[..., start:end, :].clone() for x in past.layers],
                [x.values[..., start:end, :].clone() for x in past.layers],
            )
            if end - start == self.chunk:
                self.store.put(flat[:end].tobytes(), chunk)
            chunks.append(chunk)
            logits = out.logits[0, -1]
            start = end
        assert logits is not None
        keys = [torch.cat([c.keys[layer] for c in chunks], dim=-2) for layer in range(len(chunks[0].keys))]
        values = [torch.cat([c.values[layer] for c in chunks], dim=-2) for layer in range(len(chunks[0].keys))]
        return PromptState(keys, values, logits, length)
