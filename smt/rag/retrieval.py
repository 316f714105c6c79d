"""Retrieval over document chunks: BM25, dense (faiss) and their reciprocal rank fusion.

An index is a directory (chunks.parquet, bm25.npz, bm25_vocab.json, dense.faiss, index.json) so that the build
(rag_index) and the queries (the RAG evaluations) are separate pipeline stages with a cached artifact in between.
Every file is data: the index is a DVC output that others pull from a shared remote, so nothing in it may run code
when it is loaded (no pickle: the BM25 weights are plain arrays read with allow_pickle=False).

Dense search runs on the GPU where faiss has GPU support and the job holds one (envs/requirements-gpu.txt installs
faiss-gpu): the flat inner-product index is exact on either device, so rankings agree up to ties of float sums.
Queries are embedded in batches, before any search, with the query prompt; chunks with the document prompt.
"""

from __future__ import annotations

import json
import re
import zipfile
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import faiss
import numpy as np
import polars as pl
from rank_bm25 import BM25Okapi

from smt import faults
from smt.rag import embedding
from smt.rag.chunks import Chunk

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
BM25_FILE, BM25_VOCAB = "bm25.npz", "bm25_vocab.json"
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

    def __init__(self, vocab: list[str], matrix: Any) -> None:
        self.vocab = {term: i for i, term in enumerate(vocab)}
        self.matrix = matrix

    @classmethod
    def from_okapi(cls, okapi: BM25Okapi) -> SparseBM25:
        from scipy import sparse

        vocab = {term: i for i, term in enumerate(okapi.idf)}
        doc_len = np.array(okapi.doc_len)
        norm = okapi.k1 * (1 - okapi.b + okapi.b * doc_len / okapi.avgdl)
        rows, cols, vals = [], [], []
        for d, freqs in enumerate(okapi.doc_freqs):
            for term, tf in freqs.items():
                rows.append(d)
                cols.append(vocab[term])
                vals.append((okapi.idf.get(term) or 0) * (tf * (okapi.k1 + 1) / (tf + norm[d])))
        return cls(list(vocab), sparse.csc_matrix((vals, (rows, cols)), shape=(len(doc_len), len(vocab))))

    def save(self, directory: Path) -> None:
        """The weights as plain arrays (float64, so scores stay bitwise equal) and the vocabulary as JSON. The
        archive is written with fixed entry times, so the same chunks give the same bytes (and DVC's hash)."""
        m = self.matrix
        arrays = {"data": m.data, "indices": m.indices, "indptr": m.indptr, "shape": np.array(m.shape, np.int64)}
        with zipfile.ZipFile(directory / BM25_FILE, "w") as archive:
            for name, array in arrays.items():
                with archive.open(zipfile.ZipInfo(f"{name}.npy", (1980, 1, 1, 0, 0, 0)), "w") as fh:
                    np.lib.format.write_array(fh, np.ascontiguousarray(array), allow_pickle=False)
        (directory / BM25_VOCAB).write_text(json.dumps(list(self.vocab), ensure_ascii=False))

    @classmethod
    def load(cls, directory: Path) -> SparseBM25:
        from scipy import sparse

        with np.load(directory / BM25_FILE, allow_pickle=False) as arrays:
            shape = tuple(int(n) for n in arrays["shape"])
            matrix = sparse.csc_matrix((arrays["data"], arrays["indices"], arrays["indptr"]), shape=shape)
        vocab = json.loads((directory / BM25_VOCAB).read_text())
        if not isinstance(vocab, list) or len(vocab) != shape[1]:
            raise ValueError(f"{directory / BM25_VOCAB}: expected {shape[1]} terms, one per column of {BM25_FILE}")
        return cls(vocab, matrix)

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
    chunks: Sequence[Chunk],
    embedding_model: str,
    out_dir: str | Path,
    extra: dict[str, Any] | None = None,
    document_prompt: str | None = None,
    batch_size: int = embedding.EMBED_BATCH,
    dtype: str = "float32",
) -> dict[str, Any]:
    """Write chunks.parquet, the BM25 weights, dense.faiss and index.json (with `extra` merged in) into out_dir.
    Chunks are embedded with `document_prompt` (None: the model's own document prompt, if any)."""
    if not chunks:
        raise ValueError("no chunks to index")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    pl.DataFrame([asdict(c) for c in chunks], schema=CHUNK_SCHEMA).write_parquet(out / "chunks.parquet")
    SparseBM25.from_okapi(BM25Okapi([tokenize(c.text) for c in chunks])).save(out)
    faults.point("index.bm25")
    embedder = embedding.load_embedder(embedding_model, dtype)
    prompt = embedding.side_prompt(embedder, embedding.DOCUMENT, document_prompt)
    vectors = embedding.embed(embedder, [c.text for c in chunks], prompt, batch_size, progress=True)
    dense = faiss.IndexFlatIP(vectors.shape[1])
    dense.add(vectors)
    faiss.write_index(dense, str(out / "dense.faiss"))
    faults.point("index.dense")
    info = {
        "chunks": len(chunks),
        "documents": len({c.doc_id for c in chunks}),
        "embedding_model": embedding_model,
        "embedding_dim": int(vectors.shape[1]),
        "document_prompt": prompt,
        "embedded_on": embedding.describe(embedder),
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


def on_gpu(index: Any) -> Any:
    """The index on the first GPU this process sees, where faiss has GPU support; else the index as it is."""
    if not hasattr(faiss, "StandardGpuResources") or faiss.get_num_gpus() == 0:
        return index
    return faiss.index_cpu_to_gpu(faiss.StandardGpuResources(), 0, index)


class Retriever:
    """A loaded index; the embedding model is only loaded when a dense or hybrid query needs it. Queries are
    embedded with `query_prompt` (None: the model's own query prompt, if any), `batch_size` at a time."""

    def __init__(
        self,
        chunks: pl.DataFrame,
        bm25: SparseBM25,
        dense: Any,
        info: dict[str, Any],
        query_prompt: str | None = None,
        batch_size: int = embedding.EMBED_BATCH,
        dtype: str = "float32",
    ) -> None:
        self.chunk_ids: list[str] = chunks["chunk_id"].to_list()
        self.texts: list[str] = chunks["text"].to_list()
        self.rows: dict[str, dict[str, Any]] = {row["chunk_id"]: row for row in chunks.iter_rows(named=True)}
        self.bm25 = bm25
        self.dense = dense
        self.info = info
        self.query_prompt = query_prompt
        self.batch_size = batch_size
        self.dtype = dtype
        self._embedder: Any = None
        self._vectors: dict[str, np.ndarray] = {}

    @classmethod
    def load(cls, directory: str | Path, embedding_model: str | None = None, **options: Any) -> Retriever:
        """Open an index; if `embedding_model` is given it must be the one the index was built with. `options`:
        query_prompt, batch_size, dtype (see the class)."""
        d = Path(directory)
        info = json.loads((d / "index.json").read_text())
        if embedding_model is not None and info["embedding_model"] != embedding_model:
            raise ValueError(
                f"{d}: index built with embedding model '{info['embedding_model']}', "
                f"but '{embedding_model}' was requested; rebuild the index"
            )
        chunks = pl.read_parquet(d / "chunks.parquet")
        bm25 = SparseBM25.load(d)
        if bm25.matrix.shape[0] != chunks.height:
            raise ValueError(f"{d}: {BM25_FILE} has {bm25.matrix.shape[0]} rows for {chunks.height} chunks")
        return cls(chunks, bm25, on_gpu(faiss.read_index(str(d / "dense.faiss"))), info, **options)

    def __len__(self) -> int:
        return len(self.chunk_ids)

    def _bm25_ranked(self, query: str, depth: int) -> list[tuple[int, float]]:
        scores = self.bm25.get_scores(tokenize(query))
        order = np.argsort(-scores, kind="stable")[:depth]
        return [(int(i), float(scores[i])) for i in order]

    def embedder(self) -> Any:
        if self._embedder is None:
            self._embedder = embedding.load_embedder(self.info["embedding_model"], self.dtype)
        return self._embedder

    def embedder_place(self) -> dict[str, str]:
        """Where queries are embedded and searched (device and dtype of the embedder, faiss's device)."""
        dense = "gpu" if type(self.dense).__name__.startswith("Gpu") else "cpu"
        return {**embedding.describe(self.embedder()), "faiss": dense}

    def used_query_prompt(self) -> str:
        return embedding.side_prompt(self.embedder(), embedding.QUERY, self.query_prompt)

    def prepare(self, queries: Sequence[str]) -> None:
        """Embed these queries now, in batches (a dense or hybrid search then finds them ready)."""
        todo = [q for q in dict.fromkeys(queries) if q not in self._vectors]
        if todo:
            vectors = embedding.embed(self.embedder(), todo, self.used_query_prompt(), self.batch_size, progress=True)
            self._vectors.update(zip(todo, vectors, strict=True))

    def _dense_ranked(self, query: str, depth: int) -> list[tuple[int, float]]:
        self.prepare([query])
        scores, ids = self.dense.search(self._vectors[query][None, :], min(depth, len(self)))
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
