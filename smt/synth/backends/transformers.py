"""The transformers backend: batched sampling with a KV cache, on CPU or GPU, with per-item seeds.

One model on the device this process sees (the first GPU, else the CPU); with several GPUs the job runs one
replica per GPU in a pool (smt.synth.backends.pool). Prefill keeps only the last position's logits (prompts are
left-padded, so it is every row's next-token distribution): the full-vocabulary logits of every prompt position
would take batch x prompt length x vocabulary floats (about 6 GB at 16 x 2K x 49K in float32).

A request whose prompt and max_new_tokens do not fit the model's context (`max_position_embeddings`) is not run:
its completion is an error with the reason, and the item is rejected, not the shard.

Batch invariance: on a CPU in float32 a request's completion does not depend on its batch (tested: records equal
for every batch size and shard count). On a GPU, and in bfloat16, kernels reduce in an order that depends on the
batch shape, so completions can differ in the last bits and then diverge; there is no batch-invariant mode.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import torch
from tqdm import tqdm
from transformers import AutoModelForCausalLM, AutoTokenizer

from smt.inference import render_chat
from smt.synth.generation import Completion, Request, Sampling, Stats, context_error, json_prefill, reject

RowDone = Callable[[int, list[int], str, int], None]  # row, token ids, finish reason, prompt tokens
RowToken = Callable[[int, int], None]  # row, the token id it just drew


def _filter_top_p(probs: torch.Tensor, top_p: float) -> torch.Tensor:
    if top_p >= 1.0:
        return probs
    sorted_probs, order = torch.sort(probs, descending=True)
    keep = torch.cumsum(sorted_probs, dim=-1) - sorted_probs < top_p
    filtered = torch.zeros_like(probs)
    filtered[order[keep]] = sorted_probs[keep]
    return filtered / filtered.sum()


class TransformersBackend:
    """Batched sampling with a KV cache on a Hugging Face causal LM (CPU or GPU)."""

    name = "transformers"

    def __init__(
        self,
        model_path: str,
        dtype: str = "bfloat16",
        batch_size: int = 8,
        chat_template_kwargs: dict[str, Any] | None = None,
    ) -> None:
        self.device = "cuda" if torch.cuda.is_available() else "cpu"
        self.chat_template_kwargs = dict(chat_template_kwargs or {})
        self.tokenizer = AutoTokenizer.from_pretrained(model_path)
        self.tokenizer.padding_side = "left"
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self.model = AutoModelForCausalLM.from_pretrained(model_path, dtype=getattr(torch, dtype)).to(self.device)
        self.model.eval()
        self.batch_size = batch_size
        self.stop_ids = self._stop_ids()
        self.context = getattr(self.model.config, "max_position_embeddings", None)
        self.stats = Stats()

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
            "batch_invariant": self.device == "cpu" and self.model.dtype == torch.float32,
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
    def _prefill(self, prompts: list[str]) -> tuple[Any, torch.Tensor, torch.Tensor, torch.Tensor, list[int]]:
        """Run each distinct prompt once and share its KV cache among the rows that repeat it."""
        unique = list(dict.fromkeys(prompts))
        rows = torch.tensor([unique.index(p) for p in prompts], device=self.device)
        enc = self.tokenizer(unique, return_tensors="pt", padding=True, add_special_tokens=False).to(self.device)
        positions = (enc.attention_mask.cumsum(-1) - 1).clamp(min=0)
        out = self.model(
            input_ids=enc.input_ids,
            attention_mask=enc.attention_mask,
            position_ids=positions,
            use_cache=True,
            logits_to_keep=1,
        )
        past = out.past_key_values
        past.reorder_cache(rows)
        lengths = enc.attention_mask.sum(-1)[rows].tolist()
        return past, out.logits[rows, -1, :], enc.attention_mask[rows], positions[rows, -1:], lengths

    @torch.inference_mode()
    def _sample(
        self, prompts: list[str], seeds: list[int], sampling: Sampling, on_row: RowDone, on_token: RowToken | None
    ) -> None:
        """Decode every row; a row that stops leaves the batch (and the KV cache) so the rest run faster, and goes
        to `on_row` (row, token ids, finish reason, prompt tokens) at once; the rows still going at
        max_new_tokens go there at the end. Each token drawn (not the stop token) goes to `on_token` as it is
        drawn."""
        past, logits, attention, positions, prompt_lengths = self._prefill(prompts)
        generators = [torch.Generator().manual_seed(s) for s in seeds]
        tokens: list[list[int]] = [[] for _ in prompts]
        finished = [False] * len(prompts)
        active = list(range(len(prompts)))  # original row of each batch row
        current = torch.empty(0)
        for step in range(sampling.max_new_tokens):
            if step:
                out = self.model(
                    input_ids=current,
                    attention_mask=attention,
                    position_ids=positions,
                    past_key_values=past,
                    use_cache=True,
                )
                past, logits = out.past_key_values, out.logits[:, -1, :]
            chosen, keep = [], []
            for batch_row, row in enumerate(logits.float().cpu()):
                i = active[batch_row]
                if sampling.temperature == 0:
                    token = int(row.argmax())
                else:
                    probs = _filter_top_p(torch.softmax(row / sampling.temperature, dim=-1), sampling.top_p)
                    token = int(torch.multinomial(probs, 1, generator=generators[i]))
                if token in self.stop_ids:
                    finished[i] = True
                    on_row(i, tokens[i], "stop", prompt_lengths[i])
                    continue
                tokens[i].append(token)
                if on_token is not None:
                    on_token(i, token)
                chosen.append(token)
                keep.append(batch_row)
            if not keep:
                break
            if len(keep) < len(active):
                index = torch.tensor(keep, device=self.device)
                past.batch_select_indices(index)
                attention, positions = attention[index], positions[index]
                active = [active[r] for r in keep]
            current = torch.tensor(chosen, device=self.device).unsqueeze(1)
            attention = torch.cat([attention, torch.ones_like(current)], dim=1)
            positions = positions + 1
        for i, done in enumerate(finished):
            if not done:
                on_row(i, tokens[i], "length", prompt_lengths[i])

    def generate(
        self,
        requests: list[Request],
        sampling: Sampling,
        desc: str = "generate",
        progress: bool = True,
        on_done: Callable[[Completion], None] | None = None,
        on_token: Callable[[str, int], None] | None = None,
    ) -> list[Completion]:
        """Complete every request; batches are sorted by prompt length to waste little padding. Each completion
        goes to `on_done` as soon as its row stops; each token to `on_token` (request key, token id) as it is
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
            (r for r in requests if r.key not in results), key=lambda r: (len(prompts[r.key]), prompts[r.key])
        )
        for start in range(0, len(order), self.batch_size):
            batch = order[start : start + self.batch_size]

            def finish(row: int, ids: list[int], reason: str, n_prompt: int, batch: list[Request] = batch) -> None:
                request = batch[row]
                text = self.prefill(request) + self.tokenizer.decode(ids, skip_special_tokens=True)
                results[request.key] = Completion(request.key, text, reason, n_prompt, len(ids))
                self.stats.prompt_tokens += n_prompt
                self.stats.completion_tokens += len(ids)
                if on_done is not None:
                    on_done(results[request.key])

            def token(row: int, token_id: int, batch: list[Request] = batch) -> None:
                on_token(batch[row].key, token_id)  # type: ignore[misc]

            seeds = [r.seed for r in batch]
            self._sample([prompts[r.key] for r in batch], seeds, sampling, finish, token if on_token else None)
            bar.update(len(batch))
            bar.set_postfix(tok_s=f"{self.stats.completion_tokens / (time.perf_counter() - started):.0f}")
        bar.close()
        self.stats.requests += len(requests)
        self.stats.seconds += time.perf_counter() - started
        return [results[r.key] for r in requests]
