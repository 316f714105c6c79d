"""Run one stage instance, the same way under Snakemake, DVC or by hand: check its axes, take its lock (one run
per instance, smt.pipeline.locks), remove the scratch files a killed run of it left, claim its GPUs, bring its
params stamp and model fingerprints up to date, call its adapter under the runtime guard, check its outputs,
and mark its stamp as built."""

from __future__ import annotations

import importlib
import logging
import os
import shutil
import sys
import time
from pathlib import Path
from typing import Any

from smt.pipeline import derived, dvc_yaml, gpus, guard, locks, stamps
from smt.pipeline import graph as G
from smt.pipeline import params as P
from smt.pipeline import stage as ST
from smt.pipeline import stages as S
from smt.pipeline.context import StageContext


def _logger(path: str) -> logging.Logger:
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    log = logging.getLogger("smt")
    log.handlers.clear()
    log.setLevel(logging.INFO)
    fmt = logging.Formatter("%(asctime)s %(levelname)s %(message)s")
    for handler in (logging.FileHandler(path, mode="w"), logging.StreamHandler(sys.stderr)):
        handler.setFormatter(fmt)
        log.addHandler(handler)
    log.propagate = False
    return log


def run_stage(name: str, axes: dict[str, str], params_path: str = "params.yaml", shard: int | None = None) -> None:
    """Run one stage instance: refresh its params stamp, compute, then mark the stamp as built. With `shard`,
    compute only that shard of a sharded stage (its outputs are the shard's; the stamp is marked by the merge)."""
    params = P.load(params_path)
    st = S.stage(name)
    for axis in st.axes:
        allowed = G.axis_values(params, axis)
        if axes.get(axis) not in allowed:
            raise SystemExit(f"smt {name}: --{axis} {axes.get(axis)!r} is not in params.yaml; allowed: {allowed}")
    if os.environ.get("DVC_STAGE") and dvc_yaml.stale(params):
        raise SystemExit(
            f"smt {name}: dvc.yaml does not match params.yaml (a benchmark, token budget or generator was added or "
            "removed, which changes the stages and their exact inputs). Run `python -m smt render-dvc`, then "
            "`dvc repro` (or `dvc exp run`) again."
        )
    try:
        with locks.hold(st, axes, shard):
            _run_locked(st, axes, params, shard)
    except locks.Busy as exc:
        raise SystemExit(f"smt {name}: {exc}") from None


def remove_scratch(outputs: list[str]) -> list[str]:
    """The atomic-write temporaries (`.<name>.*.tmp`, smt.io) that a killed run left beside these outputs. Only
    the run holding the instance's lock writes them, so whatever is there now is a dead run's."""
    removed = []
    for output in outputs:
        path = Path(output)
        for stale in path.parent.glob(f".{path.name}.*.tmp") if path.parent.is_dir() else []:
            shutil.rmtree(stale) if stale.is_dir() else stale.unlink()
            removed.append(str(stale))
    return removed


def _run_locked(st: ST.Stage, axes: dict[str, str], params: dict[str, Any], shard: int | None) -> None:
    name = st.name
    try:  # under Snakemake: this job's own GPUs (CUDA_VISIBLE_DEVICES), before torch loads
        devices = gpus.assign(f"smt {name}")
    except gpus.GpuError as exc:
        raise SystemExit(f"smt {name}: {exc}") from None
    os.environ["HF_HUB_OFFLINE"] = "1"  # every model a stage reads is a local folder: never fall back to a hub
    started = time.time()
    derived.refresh(params, only=st.derived(axes))
    stamps.refresh(st, axes, params)
    ctx = StageContext(
        stage=st,
        axes=axes,
        params=params,
        inputs=G.stage_inputs(st, axes, params),
        outputs=G.stage_outputs(st, axes, params),
        log=_logger(ST.log_path(st, axes) if shard is None else ST.shard_log_path(st, axes, shard)),
        shard=shard,
        code=G.stage_code(st, axes),
    )
    ctx.log.info("stage %s %s (params %s)", name, axes, ctx.fingerprint)
    shards = range(shard_count(st, params)) if shard is None else [shard]
    own = [p for i in shards for p in ctx.shard_outputs(i).values()]
    own += list(ctx.outputs.values()) if shard is None else []
    for stale in remove_scratch(own):
        ctx.log.info("removed %s, left by a run that was killed", stale)
    ctx.log.info("%s", devices.describe())
    with guard.Audit() as used:
        module = importlib.import_module(st.module_name)
        module.run(ctx)
    scratch = [
        str(Path(p).parent) for i in range(shard_count(st, params)) for p in ST.shard_outputs(st, axes, i).values()
    ]
    guard.check(
        f"{name} {axes}",
        ctx.code,
        [p for paths in ctx.inputs.values() for p in paths],
        [*ctx.outputs.values(), *scratch],
        used,
    )
    expected = ctx.outputs if shard is None else ST.shard_outputs(st, axes, shard)
    missing = [p for p in expected.values() if not Path(p).exists()]
    if missing:
        raise RuntimeError(f"stage {name} finished without writing {missing}")
    if shard is not None:
        ctx.log.info("stage %s %s shard %d done in %.1fs", name, axes, shard, time.time() - started)
        return
    stamps.mark_built(st, axes, started)
    ctx.log.info("stage %s done in %.1fs", name, time.time() - started)


def shard_count(st: ST.Stage, params: dict[str, Any]) -> int:
    return P.get(params, ST.SHARDS_KEY) if st.shards else 0
