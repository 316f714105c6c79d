"""One loader per benchmark: published files in, normalized tables (smt.benchmarks.tables) out."""
