"""Retrieval over document chunks: BM25, dense (faiss) and their reciprocal rank fusion.

An index is a directory (chunks.parquet, bm25.pkl, dense.faiss, index.json) so that the build (rag_index) and
the queries (the RAG evaluations) are separate pipeline stages with a cached artifact in between.
"""

from __future__ import annotations

import json
import pickle
import re
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import faiss
import numpy as np
import polars as pl
from rank_bm25 import BM25Okapi

from smt.rag.chunks import Chunk
from smt.rag.embedding import embed, load_embedder

METHODS = ("bm25", "dense", "hybrid")
RRF_K = 60
RRF_DEPTH = 100
CHUNK_SCHEMA = {
    "chunk_id": pl.String,
    "doc_id": pl.String,
    "title": pl.String,
    "text": pl.String,
    "char_start": pl.Int64,
    "char_end": pl.Int64,
}
_WORD = re.compile(r"[a-z0-9]+")

Hit = tuple[str, str, float]


def tokenize(text: str) -> list[str]:
    """Lowercase words and numbers: the BM25 vocabulary."""
    return _WORD.findall(text.lower())


class SparseBM25:
    """rank-bm25's BM25Okapi scores as one sparse matrix-vector product.

    BM25Okapi.get_scores walks every document in Python for every query term, which dominates query time on
    large corpora (bench/retrieval.py). Here each (document, term) weight is computed once, with the same
    expression and idf floor, and a query adds the weights of its terms in the same order: scores are bitwise
    equal to rank-bm25's, so rankings (ties included) are identical.
    """

    def __init__(self, okapi: BM25Okapi) -> None:
        from scipy import sparse

        self.vocab = {term: i for i, term in enumerate(okapi.idf)}
        doc_len = np.array(okapi.doc_len)
        norm = okapi.k1 * (1 - okapi.b + okapi.b * doc_len / okapi.avgdl)
        rows, cols, vals = [], [], []
        for d, freqs in enumerate(okapi.doc_freqs):
            for term, tf in freqs.items():
                rows.append(d)
                cols.append(self.vocab[term])
                vals.append((okapi.idf.get(term) or 0) * (tf * (okapi.k1 + 1) / (tf + norm[d])))
        self.matrix = sparse.csc_matrix((vals, (rows, cols)), shape=(len(doc_len), len(self.vocab)))

    def get_scores(self, query: Sequence[str]) -> np.ndarray:
        scores = np.zeros(self.matrix.shape[0])
        indptr, indices, data = self.matrix.indptr, self.matrix.indices, self.matrix.data
        for term in query:
            column = self.vocab.get(term)
            if column is not None:
                lo, hi = indptr[column], indptr[column + 1]
                scores[indices[lo:hi]] += data[lo:hi]
        return scores


# ---------------------------------------------------------------------------------------------- build


def build_index(
    chunks: Sequence[Chunk], embedding_model: str, out_dir: str | Path, extra: dict[str, Any] | None = None
) -> dict[str, Any]:
    """Write chunks.parquet, bm25.pkl, dense.faiss and index.json (with `extra` merged in) into out_dir."""
    if not chunks:
        raise ValueError("no chunks to index")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    pl.DataFrame([asdict(c) for c in chunks], schema=CHUNK_SCHEMA).write_parquet(out / "chunks.parquet")
    with (out / "bm25.pkl").open("wb") as fh:
        pickle.dump(BM25Okapi([tokenize(c.text) for c in chunks]), fh)
    vectors = embed(load_embedder(embedding_model), [c.text for c in chunks], progress=True)
    dense = faiss.IndexFlatIP(vectors.shape[1])
    dense.add(vectors)
    faiss.write_index(dense, str(out / "dense.faiss"))
    info = {
        "chunks": len(chunks),
        "documents": len({c.doc_id for c in chunks}),
        "embedding_model": embedding_model,
        "embedding_dim": int(vectors.shape[1]),
        **(extra or {}),
    }
    (out / "index.json").write_text(json.dumps(info, indent=2, sort_keys=True, default=str) + "\n")
    return info


# ---------------------------------------------------------------------------------------------- query


def reciprocal_rank_fusion(rankings: Sequence[Sequence[int]], k: int = RRF_K) -> list[tuple[int, float]]:
    """Fuse rankings (best first) by sum of 1 / (k + rank); ties keep the order of first appearance."""
    fused: dict[int, float] = {}
    for ranking in rankings:
        for rank, item in enumerate(ranking, 1):
            fused[item] = fused.get(item, 0.0) + 1.0 / (k + rank)
    return sorted(fused.items(), key=lambda kv: -kv[1])


class Retriever:
    """A loaded index; the embedding model is only loaded when a dense or hybrid query needs it."""

    def __init__(self, chunks: pl.DataFrame, bm25: BM25Okapi, dense: Any, info: dict[str, Any]) -> None:
        self.chunk_ids: list[str] = chunks["chunk_id"].to_list()
        self.texts: list[str] = chunks["text"].to_list()
        self.rows: dict[str, dict[str, Any]] = {row["chunk_id"]: row for row in chunks.iter_rows(named=True)}
        self.bm25 = SparseBM25(bm25)
        self.dense = dense
        self.info = info
        self._embedder: Any = None

    @classmethod
    def load(cls, directory: str | Path, embedding_model: str | None = None) -> Retriever:
        """Open an index; if `embedding_model` is given it must be the one the index was built with."""
        d = Path(directory)
        info = json.loads((d / "index.json").read_text())
        if embedding_model is not None and info["embedding_model"] != embedding_model:
            raise ValueError(
                f"{d}: index built with embedding model '{info['embedding_model']}', "
                f"but '{embedding_model}' was requested; rebuild the index"
            )
        with (d / "bm25.pkl").open("rb") as fh:
            bm25 = pickle.load(fh)
        return cls(pl.read_parquet(d / "chunks.parquet"), bm25, faiss.read_index(str(d / "dense.faiss")), info)

    def __len__(self) -> int:
        return len(self.chunk_ids)

    def _bm25_ranked(self, query: str, depth: int) -> list[tuple[int, float]]:
        scores = self.bm25.get_scores(tokenize(query))
        order = np.argsort(-scores, kind="stable")[:depth]
        return [(int(i), float(scores[i])) for i in order]

    def _dense_ranked(self, query: str, depth: int) -> list[tuple[int, float]]:
        if self._embedder is None:
            self._embedder = load_embedder(self.info["embedding_model"])
        scores, ids = self.dense.search(embed(self._embedder, [query]), min(depth, len(self)))
        return [(int(i), float(s)) for i, s in zip(ids[0], scores[0], strict=True) if i >= 0]

    def search(self, query: str, method: str = "hybrid", top_k: int = 5) -> list[Hit]:
        """The top_k chunks as (chunk_id, text, score), best first; scores are comparable within a method."""
        if method == "bm25":
            ranked = self._bm25_ranked(query, top_k)
        elif method == "dense":
            ranked = self._dense_ranked(query, top_k)
        elif method == "hybrid":
            depth = max(RRF_DEPTH, top_k)
            rankings = [[i for i, _ in f(query, depth)] for f in (self._bm25_ranked, self._dense_ranked)]
            ranked = reciprocal_rank_fusion(rankings)[:top_k]
        else:
            raise ValueError(f"unknown retrieval method '{method}'; methods: {list(METHODS)}")
        return [(self.chunk_ids[i], self.texts[i], score) for i, score in ranked]
