"""Command line: one subcommand per stage (what both schedulers run) plus the project tools."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from smt import benchmarks
from smt.pipeline import params as P
from smt.pipeline import runner
from smt.pipeline import stage as ST
from smt.pipeline import stages as S


def _tool_commands(sub: Any) -> None:
    sub.add_parser("render-dvc", help="write dvc.yaml from the stage table and params.yaml")
    sub.add_parser("render-rules", help="write rules/*.smk from the stage table")
    chk = sub.add_parser("check", help="validate params.yaml against the schema and the profiles' GPU counts")
    chk.add_argument(
        "--profile",
        action="append",
        metavar="DIR",
        help="the profile the run will use (repeatable): a conflict with it fails the check (default: report on "
        "every profile in profiles/)",
    )
    plan = sub.add_parser("plan", help="what this configuration will generate, train and cost, before it runs")
    plan.add_argument("--gpu", default="H100-SXM", help="GPU kind for GPU-hours (dense bf16 peak)")
    plan.add_argument("--generation-mfu", type=float, default=0.25, help="assumed utilization while generating")
    plan.add_argument("--train-mfu", type=float, default=0.4, help="assumed utilization while training")
    plan.add_argument("--json", action="store_true", help="print JSON")
    plan.add_argument(
        "--parameters", nargs="*", default=[], metavar="MODEL=N", help="parameter counts of models not downloaded yet"
    )
    sub.add_parser("refresh", help="rewrite the derived inputs: model fingerprints and stream token targets")
    rec = sub.add_parser(
        "record", help="after a Snakemake run: record the outputs in DVC (dvc commit); refused while any is stale"
    )
    rec.add_argument("--save", metavar="NAME", nargs="?", const="", help="also `dvc exp save` the workspace")
    sub.add_parser("sync", help="after a DVC checkout/pull: make Snakemake agree (touch when DVC is clean)")
    sub.add_parser("locks", help="stage runs in progress: the instance locks held now and their holders")
    dl = sub.add_parser("download", help="fetch a benchmark's published files and verify their pinned hashes")
    dl.add_argument("benchmark", choices=benchmarks.DOWNLOADABLE)
    dl.add_argument("--dest", help="target folder (default: data/raw/<benchmark>)")
    dl.add_argument("--all-documents", action="store_true", help="FinanceBench: every filing, not only those asked")
    dl.add_argument("--base-url", help=argparse.SUPPRESS)  # a mirror of the files (file:// in tests)
    srv = sub.add_parser("serve", help="an OpenAI-compatible endpoint around the transformers backend")
    srv.add_argument("--model", required=True, help="a Hugging Face model folder, e.g. results/models/base/smollm2")
    srv.add_argument("--host", default="127.0.0.1")
    srv.add_argument("--port", type=int, default=8000)
    srv.add_argument("--dtype", default="auto", choices=["auto", "float32", "bfloat16"], help="as generation.dtype")
    srv.add_argument("--batch-size", type=int, default=8, help="requests generated together at most")
    srv.add_argument("--api-key-env", help="require `Authorization: Bearer $NAME` (the variable's name, not the key)")
    srv.add_argument("--served-model-name", help="the model name clients send (default: the model's id)")
    cmp = sub.add_parser("compare", help="accuracy per condition and experiment, with intervals and differing params")
    cmp.add_argument("experiments", nargs="*", metavar="EXP", help="experiment names or revs (default: all listed)")
    cmp.add_argument("-A", "--all-commits", action="store_true", help="experiments of every commit, not only HEAD")
    que = sub.add_parser("queue", help="queue DVC experiments over a grid of params values (axes such as budgets too)")
    que.add_argument(
        "-S", "--set-param", dest="settings", action="append", required=True, metavar="KEY=VALUE[,VALUE...]",
        help="as `dvc exp run -S` (comma-separated values make a grid; repeat for more keys)",
    )  # fmt: skip
    que.add_argument("--name", help="experiment name (numbered -1, -2, ... for a grid)")
    closure = sub.add_parser("affected", help="stage instances a params change or a file edit reruns")
    closure.add_argument(
        "what", nargs="+", help="file paths, dotted params keys, or key=value (a YAML value) for an exact answer"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="smt", description=__doc__)
    parser.add_argument("--params", default="params.yaml", help=argparse.SUPPRESS)
    sub = parser.add_subparsers(dest="command", required=True)
    for st in S.STAGES:
        sp = sub.add_parser(st.name, help=st.doc)
        for axis in st.axes:
            sp.add_argument(f"--{axis}", required=True)
        if st.shards:
            sp.add_argument("--shard", type=int, help=f"compute only this shard (0 .. {ST.SHARDS_KEY} - 1)")
    _tool_commands(sub)
    args = parser.parse_args(argv)
    try:
        if args.command in S.BY_NAME:
            st = S.stage(args.command)
            axes = {a: getattr(args, a) for a in st.axes}
            runner.run_stage(args.command, axes, args.params, getattr(args, "shard", None))
            return 0
        if args.command == "compare":
            from smt.pipeline import compare

            return compare.compare(args.experiments, ["--all-commits"] if args.all_commits else [])
        if args.command == "queue":
            from smt.pipeline import sweep

            return sweep.queue(args.params, args.settings, args.name)
        from smt.pipeline import tools

        return tools.run(args)
    except P.ParamsError as exc:
        print(f"smt: invalid configuration: {exc}", file=sys.stderr)
        return 2
