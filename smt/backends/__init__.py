"""Generation backends besides transformers (smt/generation.py): vLLM offline and an OpenAI-compatible HTTP
endpoint. Each is imported only when `generation.backend` names it, so neither is needed on a CPU machine."""
