"""Diversity of synthetic text, as in the paper's diversity figure: lexical (the share of distinct word
4-grams among all 4-grams of a generator's texts) and semantic (the Vendi score of their embeddings)."""

from __future__ import annotations

import random
from collections.abc import Iterable
from typing import Any

import numpy as np

from smt.synth.contamination import ngrams, words
from smt.synth.generation import item_seed

LEXICAL_N = 4


def unique_ngram_ratio(texts: Iterable[str], n: int = LEXICAL_N) -> float:
    """Distinct n-grams / all n-grams over the texts (1.0: nothing repeats; 0.0 when there is no n-gram)."""
    distinct: set[tuple[str, ...]] = set()
    total = 0
    for text in texts:
        tokens = words(text)
        total += max(len(tokens) - n + 1, 0)
        distinct |= ngrams(tokens, n)
    return len(distinct) / total if total else 0.0


def vendi_score(embeddings: np.ndarray) -> float:
    """exp(entropy of the eigenvalues of K/n), K the cosine-similarity matrix (Friedman & Dieng 2023): the
    effective number of distinct items, from 1 (all alike) to n (all orthogonal). The nonzero eigenvalues of
    X X^T / n equal those of X^T X / n, so the cost is that of a d x d matrix, whatever the number of items."""
    if len(embeddings) == 0:
        return 0.0
    x = embeddings.astype(np.float64)
    x = x / np.linalg.norm(x, axis=1, keepdims=True)
    eigenvalues = np.linalg.eigvalsh((x.T @ x) / len(x))
    eigenvalues = eigenvalues[eigenvalues > 1e-12]
    return float(np.exp(-(eigenvalues * np.log(eigenvalues)).sum()))


def sample(items: list[dict[str, Any]], limit: int, seed: int, name: str) -> list[dict[str, Any]]:
    """All items, or `limit` of them drawn with a seed (embedding every item of a large run is slow on CPU)."""
    if not limit or len(items) <= limit:
        return items
    return random.Random(item_seed(seed, name, "audit")).sample(items, limit)
