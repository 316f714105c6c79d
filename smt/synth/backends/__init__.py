"""Generation backends behind `smt.generation.Backend`: transformers (CPU or GPU), vLLM offline and an
OpenAI-compatible HTTP endpoint. Each is imported only when `generation.backend` names it, so neither vLLM nor
a server is needed on a CPU machine, and jobs that only read generated records never load torch."""
