"""Rerankers: reorder the top-K retrieved chunks by a model that reads query and chunk together.

- `causal_lm`: a causal LM that answers yes or no, in Qwen3-Reranker's published format (the paper's reranker):
  the system message and `<Instruct>: ...\n<Query>: ...\n<Document>: ...` (smt/prompts/rerank_causal_lm.txt)
  rendered by the reranker's own chat template with `rag.reranker_chat_template_kwargs` (Qwen3's template with
  enable_thinking false opens the answer with the empty think block, exactly the model card's prompt; a folder
  without a chat template gets the model card's ChatML text as it is). The score is P(yes) from the logits of
  `no` and `yes` at the last position.
- `cross_encoder`: a sentence-transformers CrossEncoder from a local folder (`rag.reranker_model`), e.g. a BGE or
  ms-marco reranker.
- `llm`: the student itself judges relevance: log P(" Yes") after a yes/no question (smt/prompts/rerank_llm.txt)
  in its chat template. It needs no extra model, so it runs offline on the embedded default.

The LLM rerankers run on the job's GPU in bfloat16 where it supports it (`rag.dtype`), `rag.reranker_batch_size`
pairs per forward pass.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from smt import inference, prompts

RERANKERS = ("none", "llm", "cross_encoder", "causal_lm")
PROMPT = "rerank_llm"  # does the passage answer the question? Yes or No
CAUSAL_PROMPT = "rerank_causal_lm"  # Qwen3-Reranker's system message and user turn
CHATML = "<|im_start|>system\n{system}<|im_end|>\n<|im_start|>user\n{user}<|im_end|>\n<|im_start|>assistant\n"
EMPTY_THINK = "<think>\n\n</think>\n\n"


def one_token(tokenizer: Any, word: str) -> int:
    """The id of a word that the tokenizer spells as one token, else an error naming it."""
    ids = tokenizer.encode(word, add_special_tokens=False)
    if len(ids) != 1:
        raise ValueError(f"the reranker's tokenizer spells {word!r} as {len(ids)} tokens; it must be one")
    return int(ids[0])


class _Causal:
    """A causal LM scored at the last position of each (query, passage) prompt, a batch at a time."""

    def __init__(self, model_path: str, dtype: str, batch_size: int, chat_kwargs: dict[str, Any] | None) -> None:
        device, dtype = inference.pick(dtype)
        self.model, self.tokenizer = inference.load_causal_lm(model_path, device, dtype)
        self.batch_size = batch_size
        self.chat_kwargs = dict(chat_kwargs or {})

    def prompt(self, query: str, passage: str) -> str:
        raise NotImplementedError

    def score_rows(self, logprobs: Any) -> list[float]:
        raise NotImplementedError

    def scores(self, query: str, passages: Sequence[str]) -> list[float]:
        found: list[float] = []
        for i in range(0, len(passages), self.batch_size):
            texts = [self.prompt(query, p) for p in passages[i : i + self.batch_size]]
            found += self.score_rows(inference.next_token_logprobs(self.model, self.tokenizer, texts))
        return found

    def describe(self) -> dict[str, Any]:
        return {**inference.describe(self.model), "chat_template_kwargs": self.chat_kwargs}


class LLMReranker(_Causal):
    """Relevance as the log-probability of ' Yes' (or 'Yes') as the student's first answer token."""

    def __init__(
        self, model_path: str, dtype: str = "auto", batch_size: int = 4, chat_kwargs: dict[str, Any] | None = None
    ) -> None:
        super().__init__(model_path, dtype, batch_size, chat_kwargs)
        self.yes_ids = sorted({self.tokenizer.encode(w, add_special_tokens=False)[0] for w in ("Yes", " Yes")})

    def prompt(self, query: str, passage: str) -> str:
        message = prompts.text(PROMPT).format(passage=passage, query=query)
        if inference.has_chat_template(self.tokenizer):
            return inference.render_chat(self.tokenizer, [{"role": "user", "content": message}], self.chat_kwargs)
        return message + "\nAnswer:"

    def score_rows(self, logprobs: Any) -> list[float]:
        import torch

        return torch.logsumexp(logprobs[:, self.yes_ids], dim=-1).tolist()


class CausalLMReranker(_Causal):
    """P(yes) of a yes/no reranking LM (Qwen3-Reranker) for the query, instruction and passage."""

    def __init__(
        self,
        model_path: str,
        instruction: str,
        dtype: str = "auto",
        batch_size: int = 8,
        chat_kwargs: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(model_path, dtype, batch_size, chat_kwargs)
        self.instruction = instruction
        self.no_id, self.yes_id = one_token(self.tokenizer, "no"), one_token(self.tokenizer, "yes")
        self.parts = prompts.sections(CAUSAL_PROMPT)

    def prompt(self, query: str, passage: str) -> str:
        system = self.parts["system"].strip()
        user = self.parts["user"].strip().format(instruction=self.instruction, query=query, document=passage)
        if inference.has_chat_template(self.tokenizer):
            messages = [{"role": "system", "content": system}, {"role": "user", "content": user}]
            return inference.render_chat(self.tokenizer, messages, self.chat_kwargs)
        return CHATML.format(system=system, user=user) + EMPTY_THINK

    def score_rows(self, logprobs: Any) -> list[float]:
        import torch

        pair = logprobs[:, [self.no_id, self.yes_id]]
        return torch.softmax(pair, dim=-1)[:, 1].tolist()


class CrossEncoderReranker:
    def __init__(self, model_path: str, dtype: str = "float32") -> None:
        from sentence_transformers import CrossEncoder

        device, _ = inference.pick(dtype)
        self.model = CrossEncoder(model_path, device=device, local_files_only=True)

    def scores(self, query: str, passages: Sequence[str]) -> list[float]:
        return [float(s) for s in self.model.predict([(query, p) for p in passages], show_progress_bar=False)]

    def describe(self) -> dict[str, Any]:
        return inference.describe(self.model)


def load(
    kind: str,
    base_model: str,
    reranker_model: str | None,
    dtype: str = "float32",
    batch_size: int = 4,
    instruction: str = "",
    student_chat: dict[str, Any] | None = None,
    reranker_chat: dict[str, Any] | None = None,
) -> Any:
    """The reranker named in params, or None for `none`."""
    if kind == "none":
        return None
    if kind == "llm":
        return LLMReranker(base_model, dtype, batch_size, student_chat)
    if kind in ("cross_encoder", "causal_lm") and not reranker_model:
        raise ValueError(f"rag.reranker = {kind!r} needs rag.reranker_model (a local model folder)")
    if kind == "cross_encoder":
        return CrossEncoderReranker(reranker_model, dtype)  # type: ignore[arg-type]
    if kind == "causal_lm":
        return CausalLMReranker(reranker_model, instruction, dtype, batch_size, reranker_chat)  # type: ignore[arg-type]
    raise ValueError(f"rag.reranker = {kind!r}; allowed: {list(RERANKERS)}")


def rerank(reranker: Any, query: str, hits: list[dict[str, Any]], keep: int) -> list[dict[str, Any]]:
    """The `keep` best hits by reranker score (ties keep retrieval order), each with its `rerank_score`."""
    if reranker is None:
        return hits[:keep]
    scores = reranker.scores(query, [h["text"] for h in hits])
    order = sorted(range(len(hits)), key=lambda i: -scores[i])
    return [{**hits[i], "rerank_score": round(scores[i], 6)} for i in order[:keep]]
