"""Synthetic data: generation backends, the sharded and resumable engine, the generators (QA, Active Reading,
Focal Rewriting, WRAP, EntiGraph) and the audits of what they produce."""
