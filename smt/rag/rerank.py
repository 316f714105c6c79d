"""Rerankers: reorder the top-K retrieved chunks by a model that reads query and chunk together.

- `cross_encoder`: a sentence-transformers CrossEncoder from a local folder (`rag.reranker_model`), the usual
  choice at scale (e.g. a BGE or ms-marco reranker).
- `llm`: the base model itself judges relevance: the score is log P(" Yes") after a yes/no relevance question.
  It needs no extra model, so it runs offline on the embedded default.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from smt import prompts

RERANKERS = ("none", "llm", "cross_encoder")
PROMPT = "rerank_llm"  # does the passage answer the question? Yes or No


class LLMReranker:
    """Relevance as the log-probability of ' Yes' (or 'Yes') as the model's first answer token."""

    def __init__(self, model_path: str) -> None:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        self.torch = torch
        self.tokenizer = AutoTokenizer.from_pretrained(model_path, local_files_only=True)
        self.tokenizer.padding_side = "left"
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self.model = AutoModelForCausalLM.from_pretrained(model_path, dtype=torch.float32, local_files_only=True).eval()
        self.yes_ids = sorted({self.tokenizer.encode(w, add_special_tokens=False)[0] for w in ("Yes", " Yes")})

    def prompt(self, query: str, passage: str) -> str:
        message = prompts.text(PROMPT).format(passage=passage, query=query)
        if getattr(self.tokenizer, "chat_template", None):
            return self.tokenizer.apply_chat_template(
                [{"role": "user", "content": message}], add_generation_prompt=True, tokenize=False
            )
        return message + "\nAnswer:"

    def scores(self, query: str, passages: Sequence[str], batch_size: int = 4) -> list[float]:
        found: list[float] = []
        with self.torch.inference_mode():
            for i in range(0, len(passages), batch_size):
                texts = [self.prompt(query, p) for p in passages[i : i + batch_size]]
                enc = self.tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False)
                logits = self.model(**enc).logits[:, -1, :].float()
                logp = self.torch.log_softmax(logits, dim=-1)[:, self.yes_ids]
                found += self.torch.logsumexp(logp, dim=-1).tolist()
        return found


class CrossEncoderReranker:
    def __init__(self, model_path: str) -> None:
        from sentence_transformers import CrossEncoder

        self.model = CrossEncoder(model_path, device="cpu", local_files_only=True)

    def scores(self, query: str, passages: Sequence[str]) -> list[float]:
        return [float(s) for s in self.model.predict([(query, p) for p in passages], show_progress_bar=False)]


def load(kind: str, base_model: str, reranker_model: str | None) -> Any:
    """The reranker named in params, or None for `none`."""
    if kind == "none":
        return None
    if kind == "llm":
        return LLMReranker(base_model)
    if kind == "cross_encoder":
        if not reranker_model:
            raise ValueError("rag.reranker = 'cross_encoder' needs rag.reranker_model (a local CrossEncoder folder)")
        return CrossEncoderReranker(reranker_model)
    raise ValueError(f"rag.reranker = {kind!r}; allowed: {list(RERANKERS)}")


def rerank(reranker: Any, query: str, hits: list[dict[str, Any]], keep: int) -> list[dict[str, Any]]:
    """The `keep` best hits by reranker score (ties keep retrieval order), each with its `rerank_score`."""
    if reranker is None:
        return hits[:keep]
    scores = reranker.scores(query, [h["text"] for h in hits])
    order = sorted(range(len(hits)), key=lambda i: -scores[i])
    return [{**hits[i], "rerank_score": round(scores[i], 6)} for i in order[:keep]]
