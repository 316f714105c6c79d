"""Generation backends behind `smt.synth.generation.Backend`: transformers (CPU or GPU), vLLM offline and an
OpenAI-compatible HTTP endpoint. Each is imported only when `generation.backend` names it, so neither vLLM nor
a server is needed on a CPU machine, and jobs that only read generated records never load torch.

With several GPUs, the local backends run as several engines (smt.synth.backends.layout decides how many and on
which devices; smt.synth.backends.pool runs them, one process each)."""

from __future__ import annotations

import logging

from smt.synth.generation import BACKENDS, Backend, BackendSettings

log = logging.getLogger("smt")


def make_backend(settings: BackendSettings) -> Backend:
    """The backend `generation.backend` names, imported only when chosen (a job that only merges or audits
    generated records never loads torch), over every GPU the job holds."""
    if settings.backend == "http":
        from smt.synth.backends.http import HTTPBackend

        return HTTPBackend(**settings.http, chat_template_kwargs=settings.chat_template_kwargs)
    if settings.backend not in BACKENDS:
        raise ValueError(f"generation.backend = {settings.backend!r} is not available; allowed: {list(BACKENDS)}")
    from smt.synth.backends import layout as L

    settings = settings.resolved()
    devices = L.job_devices()
    if settings.backend == "vllm":
        requested = int(settings.vllm.get("tensor_parallel_size") or 0)
        plan = L.vllm_layout(L.read_heads(settings.model_path), len(devices), requested)
    else:
        plan = L.replica_layout(len(devices))
    log.info("generation: %s %s", settings.backend, plan.describe(len(devices)))
    if plan.idle:
        log.warning(
            "generation: %d of the job's %d GPUs idle (tensor_parallel_size %d); set it to 0 to use them",
            plan.idle,
            len(devices),
            plan.tensor_parallel,
        )
    if plan.engines == 1:
        return make_single(settings, plan.tensor_parallel)
    from smt.synth.backends.pool import EnginePool

    return EnginePool(settings, plan.groups(devices), plan.tensor_parallel)


def make_single(settings: BackendSettings, tensor_parallel: int = 1) -> Backend:
    """One engine in this process, on the devices it sees (a resolved dtype; `tensor_parallel` GPUs for vLLM)."""
    if settings.backend == "transformers":
        from smt.synth.backends.transformers import TransformersBackend

        return TransformersBackend(
            settings.model_path,
            dtype=settings.dtype,
            batch_size=settings.batch_size,
            chat_template_kwargs=settings.chat_template_kwargs,
        )
    if settings.backend == "vllm":
        from smt.synth.backends.vllm import VLLMBackend

        options = {**settings.vllm, "tensor_parallel_size": tensor_parallel}
        return VLLMBackend(
            settings.model_path, dtype=settings.dtype, chat_template_kwargs=settings.chat_template_kwargs, **options
        )
    raise ValueError(f"generation.backend = {settings.backend!r} runs no local engine")
