"""The transformers backend: batched sampling with a KV cache, on CPU or GPU, with per-item seeds.

One model on the device this process sees (the first GPU, else the CPU); with several GPUs the job runs one
replica per GPU in a pool (smt.synth.backends.pool). Prefill keeps only the last position's logits (prompts are
left-padded, so it is every row's next-token distribution): the full-vocabulary logits of every prompt position
would take batch x prompt length x vocabulary floats (about 6 GB at 16 x 2K x 49K in float32).

A request whose prompt and max_new_tokens do not fit the model's context (`max_position_embeddings`) is not run:
its completion is an error with the reason, and the item is rejected, not the shard.

Batch invariance: on a CPU, in float32 or bfloat16, a request's completion does not depend on the other requests of
its batch (tested: records equal for every shard count, and a resumed shard's equal an uninterrupted one's). Each
prompt is prefilled alone, in fixed chunks whose states prompts that begin alike share (smt.synth.backends.prefix),
and attention runs row by row over the row's own positions (smt.synth.backends.kvcache): SDPA's CPU kernel rounds
differently with the padding. The CPU's matmul kernels round differently with the number of rows (SmolLM2-135M's
float32 logits differ by up to 4e-5 between 2 and 4 rows), so a decode step runs `batch_size` rows (continuous
batching: a lane whose request finished takes the next request waiting) or, once no request waits, as few as
`lane_floor`: the smallest row count that the machine's kernels compute exactly as `batch_size` rows, probed when
the backend starts (smt.synth.backends.lanes); idle lanes below it stay in the step. A different batch_size is a
different computation (and a different params stamp). On a GPU kernels reduce in an order that depends on the batch
shape, so completions can differ in the last bits and then diverge; there is no batch-invariant mode there.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable
from typing import Any

import torch
from tqdm import tqdm
from transformers import AutoModelForCausalLM, AutoTokenizer

from smt.inference import render_chat
from smt.synth.backends import lanes
from smt.synth.backends.draw import draw
from smt.synth.backends.kvcache import (
    ATTENTION,
    ROW_ATTENTION,
    BoundedCache,
    PromptState,
    batch_cache,
    place,
    trim,
)
from smt.synth.backends.prefix import PrefixCache
from smt.synth.generation import Completion, Request, Sampling, Stats, context_error, json_prefill, reject

PROMPT_CACHE_BYTES = 2**30  # prompt states kept across generate calls: about 23K tokens of a 135M model
PREFIX_CACHE_BYTES = 2**30  # prefill chunks kept for prompts that begin alike (smt.synth.backends.prefix)
RowDone = Callable[[int, list[int], str, int], None]  # row, token ids, finish reason, prompt tokens
RowToken = Callable[[int, int], None]  # row, the token id it just drew


class TransformersBackend:
    """Batched sampling with a KV cache on a Hugging Face causal LM (CPU or GPU)."""

    name = "transformers"

    def __init__(
        self,
        model_path: str,
        dtype: str = "bfloat16",
        batch_size: int = 8,
        chat_template_kwargs: dict[str, Any] | None = None,
        prompt_cache_bytes: int = PROMPT_CACHE_BYTES,
        prefix_cache_bytes: int = PREFIX_CACHE_BYTES,
    ) -> None:
        self.device = "cuda" if torch.cuda.is_available() else "cpu"
        self.chat_template_kwargs = dict(chat_template_kwargs or {})
        self.tokenizer = AutoTokenizer.from_pretrained(model_path)
        self.tokenizer.padding_side = "left"
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self.invariant = self.device == "cpu"
        self.model = AutoModelForCausalLM.from_pretrained(
            model_path, dtype=getattr(torch, dtype), attn_implementation=ROW_ATTENTION if self.invariant else ATTENTION
        ).to(self.device)
        self.model.eval()
        self.batch_size = batch_size
        self.lane_floor = lanes.floor(self.model, batch_size) if self.invariant else 0  # rows a step keeps at least
        self.stop_ids = self._stop_ids()
        self.context = getattr(self.model.config, "max_position_embeddings", None)
        self.stats = Stats()
        self.prompts = BoundedCache(prompt_cache_bytes)
        self.prefixes = PrefixCache(prefix_cache_bytes)

    def _stop_ids(self) -> set[int]:
        ids = {self.tokenizer.eos_token_id}
        for token in ("<|im_end|>", "<|eot_id|>", "<|endoftext|>"):
            tid = self.tokenizer.convert_tokens_to_ids(token)
            if isinstance(tid, int) and tid != self.tokenizer.unk_token_id:
                ids.add(tid)
        return {i for i in ids if i is not None}

    def describe(self) -> dict[str, Any]:
        import transformers

        return {
            "name": self.name,
            "version": transformers.__version__,
            "torch": torch.__version__,
            "device": self.device,
            "dtype": str(self.model.dtype).removeprefix("torch."),
            "batch_invariant": self.invariant,
            **({"lane_floor": self.lane_floor} if self.invariant else {}),
            "prefill_chunk": self.prefixes.chunk,
            "structured_outputs": "json prefill (no constrained decoding)",
            "context": self.context,
            **({"chat_template_kwargs": self.chat_template_kwargs} if self.chat_template_kwargs else {}),
        }

    @staticmethod
    def prefill(request: Request) -> str:
        """The text the answer starts with: the request's own, else the JSON opening its schema implies."""
        if request.prefill or not request.json_schema:
            return request.prefill
        return json_prefill(request.json_schema)

    def prompt_text(self, request: Request) -> str:
        if request.prompt:
            return request.prompt + self.prefill(request)
        variables = {**self.chat_template_kwargs, **request.chat_template_kwargs}
        return render_chat(self.tokenizer, request.messages, variables) + self.prefill(request)

    @torch.inference_mode()
    def _prompt_state(self, prompt: str) -> PromptState:
        """The prompt's KV states and next-token logits, prefilled alone (from the cache when it ran before; its
        leading chunks from the prefix cache when another prompt began alike)."""
        state = self.prompts.get(prompt)
        if state is None:
            ids = self.tokenizer(prompt, return_tensors="pt", add_special_tokens=False).input_ids.to(self.device)
            state = self.prefixes.prefill(self.model, ids)
            self.prompts.put(prompt, state)
        return state

    def _prefill(self, prompts: list[str], reserve: int) -> tuple[Any, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Each distinct prompt prefilled once, its states shared by the rows that repeat it, left-padded into one
        batch with room for `reserve` new tokens: the cache, next-token logits, attention mask and positions."""
        unique = list(dict.fromkeys(prompts))
        states = [self._prompt_state(p) for p in unique]
        rows = [unique.index(p) for p in prompts]
        past, attention = batch_cache(states, rows, reserve)
        logits = torch.stack([states[r].logits for r in rows])
        positions = torch.tensor([[states[r].length - 1] for r in rows], device=self.device)
        return past, logits, attention, positions

    @torch.inference_mode()
    def _sample(
        self, prompts: list[str], seeds: list[int], sampling: Sampling, on_row: RowDone, on_token: RowToken | None
    ) -> None:
        """Decode every request with continuous batching: `batch_size` lanes decode together, and a request that
        stops (or reaches max_new_tokens) hands its lane to the next one waiting, whose prompt states go into the
        lane (smt.synth.backends.kvcache.place). A finished request goes to `on_row` (its index, token ids, finish
        reason, prompt tokens) at once; each token drawn (not the stop token) to `on_token` as it is drawn."""
        waiting = iter(range(len(prompts)))
        first = list(itertools.islice(waiting, self.batch_size))
        rows = max(len(first), self.lane_floor)
        past, logits, attention, positions = self._prefill(
            [prompts[i] for i in first] + [prompts[first[0]]] * (rows - len(first)), sampling.max_new_tokens
        )
        attention[len(first) :] = 0  # an empty lane attends to nothing but its own tokens
        owner: list[int | None] = [*first, *[None] * (rows - len(first))]  # lane -> the request it decodes
        prompt_tokens = {i: int(attention[b].sum()) for b, i in enumerate(first)}
        generators = [torch.Generator().manual_seed(s) for s in seeds]
        tokens: list[list[int]] = [[] for _ in prompts]
        following = [self.tokenizer.pad_token_id] * rows

        def advance(lane: int, token: int) -> bool:
            """Take the token a lane drew; True when its request is finished."""
            i = owner[lane]
            assert i is not None
            if token in self.stop_ids:
                on_row(i, tokens[i], "stop", prompt_tokens[i])
                return True
            tokens[i].append(token)
            if on_token is not None:
                on_token(i, token)
            following[lane] = token
            if len(tokens[i]) < sampling.max_new_tokens:
                return False
            on_row(i, tokens[i], "length", prompt_tokens[i])
            return True

        while True:
            live = [b for b, i in enumerate(owner) if i is not None]
            drawn = draw(logits[live], sampling.temperature, sampling.top_p, [generators[owner[b]] for b in live])
            freed = [b for b, token in zip(live, drawn, strict=True) if advance(b, token)]
            for b in freed:  # the next waiting request takes the lane, its first token drawn from its prompt
                owner[b] = None
                for i in waiting:
                    state = self._prompt_state(prompts[i])
                    owner[b], prompt_tokens[i] = i, state.length
                    token = draw(state.logits[None], sampling.temperature, sampling.top_p, [generators[i]])[0]
                    if not advance(b, token):
                        attention = place(past, attention, b, state)
                        positions[b] = state.length - 1
                        break
                    owner[b] = None
            live = [b for b, i in enumerate(owner) if i is not None]
            if not live:
                return
            attention[[b for b in freed if owner[b] is None]] = 0  # an idle lane attends to nothing but itself
            spare = [b for b, i in enumerate(owner) if i is None]  # only once no request waits
            keep = sorted(live + spare[: max(self.lane_floor - len(live), 0)])
            if len(keep) < len(owner):  # idle lanes leave the batch and the KV cache, so the rest run faster
                index = torch.tensor(keep, device=self.device)
                past.batch_select_indices(index)
                attention, positions = attention[index], positions[index]
                owner, following = [owner[b] for b in keep], [following[b] for b in keep]
            attention = trim(past, attention, [b for b, i in enumerate(owner) if i is not None])
            current = torch.tensor(following, device=self.device).unsqueeze(1)
            attention = torch.cat([attention, torch.ones_like(current)], dim=1)
            positions = positions + 1
            out = self.model(
                input_ids=current,
                attention_mask=attention,
                position_ids=positions,
                past_key_values=past,
                use_cache=True,
            )
            past, logits = out.past_key_values, out.logits[:, -1, :]

    def generate(
        self,
        requests: list[Request],
        sampling: Sampling,
        desc: str = "generate",
        progress: bool = True,
        on_done: Callable[[Completion], None] | None = None,
        on_token: Callable[[str, int], None] | None = None,
    ) -> list[Completion]:
        """Complete every request, longest prompt first, `batch_size` at a time with continuous batching. Each
        completion goes to `on_done` as soon as its row stops; each token to `on_token` (request key, token id) as it is
        drawn (what `smt serve` streams)."""
        prompts = {r.key: self.prompt_text(r) for r in requests}
        results: dict[str, Completion] = {}
        bar = tqdm(total=len(requests), desc=desc, unit="item", dynamic_ncols=True, disable=not progress)
        started = time.perf_counter()
        for request in requests:
            n_prompt = len(self.tokenizer(prompts[request.key], add_special_tokens=False).input_ids)
            error = context_error(n_prompt, sampling.max_new_tokens, self.context)
            if error:
                results[request.key] = reject(request, error, n_prompt)
                bar.update(1)
                if on_done is not None:
                    on_done(results[request.key])
        order = sorted(
            (r for r in requests if r.key not in results), key=lambda r: (-len(prompts[r.key]), prompts[r.key])
        )  # longest prompt first: a request taking a lane later then never has to widen the cache
        drawn = [0]  # completion tokens of this call, for the progress bar's rate

        def finish(row: int, ids: list[int], reason: str, n_prompt: int) -> None:
            request = order[row]
            text = self.prefill(request) + self.tokenizer.decode(ids, skip_special_tokens=True)
            results[request.key] = Completion(request.key, text, reason, n_prompt, len(ids))
            self.stats.prompt_tokens += n_prompt
            self.stats.completion_tokens += len(ids)
            drawn[0] += len(ids)
            bar.update(1)
            bar.set_postfix(tok_s=f"{drawn[0] / (time.perf_counter() - started):.0f}")
            if on_done is not None:
                on_done(results[request.key])

        def token(row: int, token_id: int) -> None:
            on_token(order[row].key, token_id)  # type: ignore[misc]

        if order:
            seeds = [r.seed for r in order]
            self._sample([prompts[r.key] for r in order], seeds, sampling, finish, token if on_token else None)
        bar.close()
        self.stats.requests += len(requests)
        self.stats.seconds += time.perf_counter() - started
        return [results[r.key] for r in requests]
