"""Command line: one subcommand per stage (what both schedulers run) plus the project tools."""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
import time
from pathlib import Path
from typing import Any

from smt import dvc_render, externals, gpus, guard, stamps
from smt import params as P
from smt import registry as R
from smt.context import StageContext

# stage name -> module under smt.stages providing `run(ctx)`
IMPLEMENTATIONS = {
    "model": "model",
    "ingest": "ingest",
    "synth_qa": "synth_qa",
    "synth_docs": "synth_docs",
    "synth_contamination": "synth_contamination",
    "synth_audit": "synth_audit",
    "mix": "mix",
    "train": "train",
    "rag_index": "rag_index",
    "retrieve": "retrieve",
    **{f"eval_{c}": "evaluate" for c in R.CONDITIONS},
    "scaling": "scaling",
    "report": "report",
}


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
    st = R.stage(name)
    for axis in st.axes:
        allowed = R.axis_values(params, axis)
        if axes.get(axis) not in allowed:
            raise SystemExit(f"smt {name}: --{axis} {axes.get(axis)!r} is not in params.yaml; allowed: {allowed}")
    if os.environ.get("DVC_STAGE") and dvc_render.stale(params):
        raise SystemExit(
            f"smt {name}: dvc.yaml does not match params.yaml (a benchmark, token budget or generator was added or "
            "removed, which changes the stages and their exact inputs). Run `python -m smt render-dvc`, then "
            "`dvc repro` (or `dvc exp run`) again."
        )
    try:  # under Snakemake: this job's own GPUs (CUDA_VISIBLE_DEVICES), before torch loads
        devices = gpus.assign(f"smt {name}")
    except gpus.GpuError as exc:
        raise SystemExit(f"smt {name}: {exc}") from None
    started = time.time()
    externals.refresh(R.external_names(st), params)
    stamps.refresh(st, axes, params)
    ctx = StageContext(
        stage=st,
        axes=axes,
        params=params,
        inputs=R.stage_inputs(st, axes, params),
        outputs=R.stage_outputs(st, axes, params),
        log=_logger(R.log_path(st, axes) if shard is None else R.shard_log_path(st, axes, shard)),
        shard=shard,
    )
    ctx.log.info("stage %s %s (params %s)", name, axes, ctx.fingerprint)
    ctx.log.info("%s", devices.describe())
    with guard.Audit() as used:
        module = importlib.import_module(f"smt.stages.{IMPLEMENTATIONS[name]}")
        module.run(ctx)
    scratch = [
        str(Path(p).parent) for i in range(shard_count(st, params)) for p in R.shard_outputs(st, axes, i).values()
    ]
    guard.check(
        f"{name} {axes}",
        R.stage_code(st, axes),
        [p for paths in ctx.inputs.values() for p in paths],
        [*ctx.outputs.values(), *scratch],
        used,
    )
    expected = ctx.outputs if shard is None else R.shard_outputs(st, axes, shard)
    missing = [p for p in expected.values() if not Path(p).exists()]
    if missing:
        raise RuntimeError(f"stage {name} finished without writing {missing}")
    if shard is not None:
        ctx.log.info("stage %s %s shard %d done in %.1fs", name, axes, shard, time.time() - started)
        return
    stamps.mark_built(st, axes, started)
    ctx.log.info("stage %s done in %.1fs", name, time.time() - started)


def shard_count(st: R.Stage, params: dict[str, Any]) -> int:
    return P.get(params, R.SHARDS_KEY) if st.shards else 0


def _tool_commands(sub: Any) -> None:
    sub.add_parser("render-dvc", help="write dvc.yaml from the stage registry")
    sub.add_parser("check", help="validate params.yaml and print the stage instances")
    sub.add_parser("refresh-externals", help="re-hash the model folders and packages params.yaml names")
    rec = sub.add_parser("record", help="after a Snakemake run: record the outputs in DVC (dvc commit)")
    rec.add_argument("--save", metavar="NAME", nargs="?", const="", help="also `dvc exp save` the workspace")
    sub.add_parser("sync", help="after a DVC checkout/pull: make Snakemake agree (touch when DVC is clean)")
    dl = sub.add_parser("download", help="fetch a benchmark's published files and verify their pinned hashes")
    dl.add_argument("benchmark", choices=["quality", "longhealth", "financebench"])
    dl.add_argument("--dest", help="target folder (default: data/raw/<benchmark>)")
    dl.add_argument("--all-documents", action="store_true", help="FinanceBench: every filing, not only those asked")
    dl.add_argument("--base-url", help=argparse.SUPPRESS)  # a mirror of the files (file:// in tests)
    srv = sub.add_parser("serve", help="an OpenAI-compatible endpoint around the transformers backend")
    srv.add_argument("--model", default=R.BASE_MODEL, help="a Hugging Face model folder")
    srv.add_argument("--host", default="127.0.0.1")
    srv.add_argument("--port", type=int, default=8000)
    srv.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"])
    srv.add_argument("--batch-size", type=int, default=8, help="requests generated together at most")
    srv.add_argument("--api-key-env", help="require `Authorization: Bearer $NAME` (the variable's name, not the key)")
    srv.add_argument("--served-model-name", help="the model name clients send (default: the model's id)")
    closure = sub.add_parser("affected", help="stage instances a params change or a file edit reruns")
    closure.add_argument(
        "what", nargs="+", help="file paths, dotted params keys, or key=value (a YAML value) for an exact answer"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="smt", description=__doc__)
    parser.add_argument("--params", default="params.yaml", help=argparse.SUPPRESS)
    sub = parser.add_subparsers(dest="command", required=True)
    for st in R.STAGES:
        sp = sub.add_parser(st.name, help=st.doc)
        for axis in st.axes:
            sp.add_argument(f"--{axis}", required=True)
        if st.shards:
            sp.add_argument("--shard", type=int, help=f"compute only this shard (0 .. {R.SHARDS_KEY} - 1)")
    _tool_commands(sub)
    args = parser.parse_args(argv)
    try:
        if args.command in R.BY_NAME:
            st = R.stage(args.command)
            run_stage(args.command, {a: getattr(args, a) for a in st.axes}, args.params, getattr(args, "shard", None))
            return 0
        from smt import tools

        return tools.run(args)
    except P.ParamsError as exc:
        print(f"smt: invalid configuration: {exc}", file=sys.stderr)
        return 2
