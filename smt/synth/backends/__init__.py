"""Generation backends behind `smt.synth.generation.Backend`: transformers (CPU or GPU), vLLM offline and an
OpenAI-compatible HTTP endpoint. Each is imported only when `generation.backend` names it, so neither vLLM nor
a server is needed on a CPU machine, and jobs that only read generated records never load torch."""

from __future__ import annotations

from smt.synth.generation import BACKENDS, Backend, BackendSettings


def make_backend(settings: BackendSettings) -> Backend:
    """The backend `generation.backend` names, imported only when chosen (a job that only merges or audits
    generated records never loads torch)."""
    if settings.backend == "transformers":
        from smt.synth.backends.transformers import TransformersBackend

        return TransformersBackend(settings.model_path, dtype=settings.dtype, batch_size=settings.batch_size)
    if settings.backend == "vllm":
        from smt.synth.backends.vllm import VLLMBackend

        return VLLMBackend(settings.model_path, dtype=settings.dtype, **settings.vllm)
    if settings.backend == "http":
        from smt.synth.backends.http import HTTPBackend

        return HTTPBackend(**settings.http)
    raise ValueError(f"generation.backend = {settings.backend!r} is not available; allowed: {list(BACKENDS)}")
