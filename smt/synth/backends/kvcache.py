"""KV states for batched decoding with transformers, without the copies that dominate a decode step on a CPU.

Measured on a 2-core CPU, SmolLM2-135M, batch 16, 877-token prompts (bench/generation.py has the end-to-end
figures): a decode step took 421 ms with transformers' defaults, of which about half was `repeat_kv` copying every
layer's keys and values to the query heads' count (grouped-query attention with a padding mask), and most of the
rest `torch.cat` growing the cache by one token (a copy of the whole cache per layer per step). With the three
pieces below it takes 113 ms and draws the same tokens.

- `decode_attention`: for one query token, the query heads that share a KV head are folded into the query-length
  dimension, so SDPA reads each KV head once instead of a repeated copy. Prefill (several query tokens) takes
  transformers' own SDPA path.
  Measured against it: one masked SDPA call per layer over rows kept from position 0, their width rounded up to a
  multiple of the CPU kernel's 512-key block (which keeps every row exact whatever the batch): as fast at 16 rows
  of ~800 positions (101 vs 99 tokens/s), slower once rows cross a block (67 vs 84 tokens/s with 256 new tokens),
  because every row then reads the widest row's blocks. Decoding reads the KV states, not the arithmetic, bounds it.
- `GrowingLayer`: a cache layer whose keys and values live in a buffer with room for the tokens still to come;
  a step writes one slice instead of concatenating.
- `BoundedCache`, the prompt cache: each distinct prompt is prefilled alone (batch 1, no padding) and its states
  are kept, bounded in bytes, so generation rounds that ask the same document again do not prefill it again. A
  prompt's states never depend on which other prompts share its batch or ran before it, so records stay
  independent of batch size, shard count and cache hits.
"""

from __future__ import annotations

import functools
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

import torch
from transformers import AttentionInterface
from transformers.cache_utils import DynamicCache, DynamicLayer
from transformers.integrations.sdpa_attention import sdpa_attention_forward
from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

ATTENTION = "smt_grouped_sdpa"
ROW_ATTENTION = "smt_row_sdpa"


def decode_attention(
    module: torch.nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    dropout: float = 0.0,
    scaling: float | None = None,
    is_causal: bool | None = None,
    *,
    per_row: bool = False,
    **kwargs: Any,
) -> tuple[torch.Tensor, None]:
    """SDPA for one query token (a decode step) over grouped-query attention without repeating the KV heads; other
    calls go to transformers' SDPA. `per_row`: one row at a time over the row's own positions (from its first
    unmasked one): SDPA's CPU kernel walks the keys in blocks from the first position, so a row's left padding,
    which depends on the other prompts of its batch, would otherwise change how its sums are grouped and rounded."""
    batch, heads, length, dim = query.shape
    grouped = heads != key.shape[1]
    if length != 1 or dropout or (not per_row and (not grouped or attention_mask is None)):
        return sdpa_attention_forward(
            module, query, key, value, attention_mask, dropout=dropout, scaling=scaling, is_causal=is_causal, **kwargs
        )
    folded = query.reshape(batch, key.shape[1], heads // key.shape[1], dim)  # KV-head major, as repeat_kv lays out
    if not per_row:
        assert attention_mask is not None
        mask = attention_mask[:, :, :, : key.shape[2]]
        out = torch.nn.functional.scaled_dot_product_attention(folded, key, value, attn_mask=mask, scale=scaling)
        return out.reshape(batch, heads, 1, dim).transpose(1, 2).contiguous(), None
    starts = [0] * batch
    if attention_mask is not None:
        allowed = attention_mask[:, 0, -1, : key.shape[2]]
        allowed = allowed if allowed.dtype == torch.bool else allowed == 0
        starts = allowed.int().argmax(-1).tolist()
    out = torch.empty_like(folded)
    for row, start in enumerate(starts):
        out[row] = torch.nn.functional.scaled_dot_product_attention(
            folded[row : row + 1], key[row : row + 1, :, start:], value[row : row + 1, :, start:], scale=scaling
        )[0]
    return out.reshape(batch, heads, 1, dim).transpose(1, 2).contiguous(), None


for _name, _per_row in ((ATTENTION, False), (ROW_ATTENTION, True)):
    AttentionInterface.register(_name, functools.partial(decode_attention, per_row=_per_row))
    AttentionMaskInterface.register(_name, sdpa_mask)


class GrowingLayer(DynamicLayer):
    """A DynamicLayer over a preallocated buffer: `keys`/`values` are views of its first `length` positions."""

    reserve = 256  # positions allocated beyond the current length when the buffer must grow

    def lazy_initialization(self, key_states: torch.Tensor, value_states: torch.Tensor) -> None:
        self.dtype, self.device = key_states.dtype, key_states.device
        self._keys = self._values = None
        self.length = 0
        self.is_initialized = True

    @classmethod
    def holding(cls, keys: torch.Tensor, values: torch.Tensor, length: int, reserve: int) -> GrowingLayer:
        """A layer over buffers whose first `length` positions hold states (the rest is room for decoding)."""
        layer = cls()
        layer.lazy_initialization(keys, values)
        layer._keys, layer._values, layer.length, layer.reserve = keys, values, length, reserve
        return layer

    @property
    def keys(self) -> torch.Tensor | None:
        return None if getattr(self, "_keys", None) is None else self._keys[..., : self.length, :]

    @keys.setter
    def keys(self, states: torch.Tensor | None) -> None:  # transformers replaces the states (row selection, crop)
        self._keys = states
        self.length = 0 if states is None or states.dim() < 3 else states.shape[-2]

    @property
    def values(self) -> torch.Tensor | None:
        return None if getattr(self, "_values", None) is None else self._values[..., : self.length, :]

    @values.setter
    def values(self, states: torch.Tensor | None) -> None:
        self._values = states

    def update(
        self, key_states: torch.Tensor, value_states: torch.Tensor, *args: Any, **kwargs: Any
    ) -> tuple[torch.Tensor, torch.Tensor]:
        if not self.is_initialized:
            self.lazy_initialization(key_states, value_states)
        end = self.length + key_states.shape[-2]
        if self._keys is None or self._keys.dim() < 3 or end > self._keys.shape[-2]:
            shape = (*key_states.shape[:-2], end + self.reserve, key_states.shape[-1])
            keys, values = key_states.new_empty(shape), value_states.new_empty(shape)
            if self.length:
                keys[..., : self.length, :] = self.keys
                values[..., : self.length, :] = self.values
            self._keys, self._values = keys, values
        self._keys[..., self.length : end, :] = key_states
        self._values[..., self.length : end, :] = value_states
        self.length = end
        assert self.keys is not None and self.values is not None
        return self.keys, self.values


@dataclass
class PromptState:
    """One prompt prefilled alone: per layer keys and values ([1, kv heads, length, head dim]) and the
    next-token logits after its last position."""

    keys: list[torch.Tensor]
    values: list[torch.Tensor]
    logits: torch.Tensor
    length: int

    @property
    def nbytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in (*self.keys, *self.values, self.logits))


class BoundedCache:
    """Key -> a value with `nbytes` (a prompt's states, a prefill chunk's), least recently used first out, at most
    `max_bytes` held."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self.entries: OrderedDict[str | bytes, Any] = OrderedDict()
        self.held = 0
        self.hits = self.misses = 0

    def get(self, key: str | bytes) -> Any:
        value = self.entries.get(key)
        if value is None:
            self.misses += 1
            return None
        self.hits += 1
        self.entries.move_to_end(key)
        return value

    def put(self, key: str | bytes, value: Any) -> None:
        if value.nbytes > self.max_bytes or key in self.entries:
            return
        while self.held + value.nbytes > self.max_bytes:
            self.held -= self.entries.popitem(last=False)[1].nbytes
        self.entries[key] = value
        self.held += value.nbytes


def batch_cache(states: list[PromptState], rows: list[int], reserve: int) -> tuple[DynamicCache, torch.Tensor]:
    """A cache for a batch whose row i continues `states[rows[i]]`, left-padded to the longest prompt with room for
    `reserve` more tokens, and the batch's attention mask (0 over the padding)."""
    longest = max(states[r].length for r in rows)
    first = states[rows[0]]
    mask = torch.zeros(len(rows), longest, dtype=torch.long, device=first.logits.device)
    for i, r in enumerate(rows):
        mask[i, longest - states[r].length :] = 1
    layers = []
    for layer, template in enumerate(first.keys):
        shape = (len(rows), template.shape[1], longest + reserve, template.shape[-1])
        keys, values = template.new_zeros(shape), template.new_zeros(shape)
        for i, r in enumerate(rows):
            start = longest - states[r].length
            keys[i, :, start:longest] = states[r].keys[layer][0]
            values[i, :, start:longest] = states[r].values[layer][0]
        layers.append(GrowingLayer.holding(keys, values, longest, reserve))
    cache = DynamicCache()
    cache.layer_class_to_replicate = GrowingLayer
    cache.layers = layers
    return cache, mask


def place(cache: DynamicCache, mask: torch.Tensor, lane: int, state: PromptState) -> torch.Tensor:
    """Put a prompt's states into `lane` of a running batch (continuous batching: a request takes the lane of one
    that finished), right-aligned to the batch's current length so the next step writes its first token; the cache
    grows on the left when the prompt is longer than the batch so far. Returns the batch's new attention mask."""
    width = state.length - mask.shape[1]
    if width > 0:
        for layer in cache.layers:
            assert isinstance(layer, GrowingLayer) and layer._keys is not None and layer._values is not None
            pad = (0, 0, width, 0)
            layer._keys = torch.nn.functional.pad(layer._keys, pad)
            layer._values = torch.nn.functional.pad(layer._values, pad)
            layer.length += width
        mask = torch.nn.functional.pad(mask, (width, 0))
    end = mask.shape[1]
    for layer, keys, values in zip(cache.layers, state.keys, state.values, strict=True):
        assert isinstance(layer, GrowingLayer) and layer._keys is not None and layer._values is not None
        layer._keys[lane, :, end - state.length : end] = keys[0]
        layer._values[lane, :, end - state.length : end] = values[0]
    mask[lane] = 0
    mask[lane, end - state.length :] = 1
    return mask


def trim(cache: DynamicCache, mask: torch.Tensor, rows: list[int]) -> torch.Tensor:
    """Drop the leading positions no row of `rows` attends to (they belonged to finished requests), so a long run
    of continuous batching holds only what its live rows need. Returns the batch's new attention mask."""
    first = int(mask[rows].any(0).int().argmax()) if rows else 0
    if first < mask.shape[1] // 2:  # at most half the cache is dead: not worth a copy yet
        return mask
    for layer in cache.layers:
        assert isinstance(layer, GrowingLayer) and layer._keys is not None and layer._values is not None
        layer._keys = layer._keys[..., first:, :].clone()
        layer._values = layer._values[..., first:, :].clone()
        layer.length -= first
    return mask[:, first:].clone()
