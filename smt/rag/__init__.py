"""Retrieval over a benchmark's documents: chunks, BM25 and dense indexes, hybrid fusion, reranking."""
