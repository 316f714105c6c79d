"""Project tools: render dvc.yaml and the rules, check params, reconcile Snakemake and DVC, and say what a change
reruns."""

from __future__ import annotations

import argparse
import copy
import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

from smt.pipeline import derived, dvc_yaml, locks, placement, smk, stamps
from smt.pipeline import graph as G
from smt.pipeline import params as P
from smt.pipeline import stage as ST
from smt.pipeline import stages as S


def _run(cmd: list[str]) -> subprocess.CompletedProcess[str]:
    print("+ " + " ".join(cmd), file=sys.stderr)
    return subprocess.run(cmd, check=False, text=True, capture_output=True)


def dvc_out_of_date() -> list[str]:
    """Stage ids `dvc status` reports as changed (empty when the workspace matches dvc.lock)."""
    proc = _run(["dvc", "status", "--json"])
    if proc.returncode != 0:
        raise RuntimeError(f"dvc status failed:\n{proc.stderr}")
    status = json.loads(proc.stdout or "{}")
    return sorted(k for k in status if not k.endswith(".dvc") and k != dvc_yaml.REFRESH_STAGE)


def prepare(params: dict[str, Any]) -> None:
    """Bring everything derived from params.yaml and the code up to date: the params stamps, the fingerprints of
    external folders and packages, dvc.yaml (whose exact inputs follow the benchmarks, budgets and generators)
    and rules/*.smk (whose code lists follow the imports)."""
    derived.refresh(params)
    stamps.refresh_all(params)
    if dvc_yaml.write(params):
        print("smt: dvc.yaml re-rendered from params.yaml", file=sys.stderr)
    for path in smk.write():
        print(f"smt: {path} re-rendered from smt/pipeline/stages.py", file=sys.stderr)


def render_dvc(params_path: str) -> int:
    dvc_yaml.write(P.load(params_path))
    print("dvc.yaml matches params.yaml", file=sys.stderr)
    return 0


def render_rules() -> int:
    smk.write()
    print("rules/*.smk match smt/pipeline/stages.py", file=sys.stderr)
    return 0


PROFILES = Path("profiles")


def check(params_path: str, profiles: list[str] | None = None) -> int:
    """Validate params.yaml, list every stage instance, and check params against the GPUs each profile gives its
    rules. A conflict with a profile named on the command line fails the check; without one, every profile in
    profiles/ is reported (the embedded default's params are for the CPU, and the cluster profiles need others)."""
    params = P.load(params_path)
    prepare(params)
    for st in S.STAGES:
        for axes in G.instances(st, params):
            print(f"{ST.instance_id(st, axes):40s} params {P.fingerprint(params, st.keys(axes, params))}")
    named = profiles or sorted(str(p.parent) for p in PROFILES.glob("*/config.yaml"))
    failed = False
    for profile in named:
        if not Path(profile).exists():
            print(f"smt check: no profile {profile}", file=sys.stderr)
            failed = True
            continue
        found = placement.check(params, placement.profile_gpus(profile))
        for warning in found.warnings:
            print(f"smt check: {profile}: warning: {warning}", file=sys.stderr)
        for conflict in found.conflicts:
            print(f"smt check: {profile}: conflict: {conflict}", file=sys.stderr)
        if not found.conflicts:
            print(f"smt check: {profile}: params fit its GPU counts", file=sys.stderr)
        failed |= bool(found.conflicts and profiles)
    return 1 if failed else 0


_COMMAND = re.compile(r"python -m smt (\w+)((?: --\w+ \S+)*)")
_RULE = re.compile(r"^(?:local)?rule (\w+):", re.MULTILINE)


def planned(dry_run: str) -> list[str]:
    """The stage instances in the output of `snakemake -n -p` (a shard job counts as its instance); rules
    without an `smt` command by their name."""
    found = set()
    for stage, args in _COMMAND.findall(dry_run):
        axes = {flag: v for flag, v in re.findall(r"--(\w+) (\S+)", args) if flag != "shard"}
        found.add(ST.instance_id(S.stage(stage), axes))
    if not found:
        found = set(_RULE.findall(dry_run)) - {"all"}
    return sorted(found)


def snakemake_pending() -> list[str]:
    """The instances `snakemake -n` would run (none when every output is up to date)."""
    proc = _run(["snakemake", "-n", "-p", "--cores", "1"])
    if proc.returncode != 0:
        raise RuntimeError(f"snakemake -n failed:\n{proc.stdout[-2000:]}{proc.stderr[-3000:]}")
    return planned(proc.stdout + proc.stderr)


def _recorded(output: Path) -> list[tuple[Path, dict[str, Any]]]:
    """The provenance blocks an output carries: a JSON file's own, or those of the JSON files in an output
    folder (a model's smt_manifest.json, an index's index.json)."""
    files = [output] if output.suffix == ".json" and output.is_file() else []
    files += sorted(output.glob("*.json")) if output.is_dir() else []
    found = []
    for path in files:
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        block = data.get("provenance") if isinstance(data, dict) else None
        if isinstance(block, dict) and "params_fingerprint" in block:
            found.append((path, block))
    return found


def stale_outputs(params: dict[str, Any]) -> list[str]:
    """Outputs whose recorded params fingerprint is not the one params.yaml gives their instance now (an output
    put back from another run, or touched into looking up to date), each with its instance."""
    stale = []
    for st in S.STAGES:
        for axes in G.instances(st, params):
            now = P.fingerprint(params, st.keys(axes, params))
            for output in G.stage_outputs(st, axes, params).values():
                for path, block in _recorded(Path(output)):
                    mine = block.get("stage") == st.name and block.get("axes") == axes
                    if mine and block["params_fingerprint"] != now:
                        iid = ST.instance_id(st, axes)
                        stale.append(f"{iid}: {path} (built with params {block['params_fingerprint']}, now {now})")
    return stale


def record(params_path: str, save: str | None) -> int:
    """After a Snakemake run: store the outputs in the DVC cache and dvc.lock without recomputing. Refused, with
    the instances named, while Snakemake has work left or an output was built from other params values: DVC
    would record it as the result of the current ones."""
    params = P.load(params_path)
    prepare(params)
    pending, stale = snakemake_pending(), stale_outputs(params)
    if pending or stale:
        if pending:
            print(
                f"smt record: refused: Snakemake has work left for {len(pending)} instance(s): {', '.join(pending)}. "
                "Run `snakemake` first (`snakemake -n` says why each is out of date).",
                file=sys.stderr,
            )
        if stale:
            print(
                f"smt record: refused: {len(stale)} output(s) were built from other params values than "
                "params.yaml gives now:\n  " + "\n  ".join(stale) + "\nRebuild them (`snakemake --forcerun "
                "<rule>` or `dvc repro --force <stage>`), or put back the params they were built with.",
                file=sys.stderr,
            )
        return 1
    proc = _run(["dvc", "commit", "--force"])
    sys.stderr.write(proc.stdout + proc.stderr)
    if proc.returncode != 0:
        return proc.returncode
    if save is not None:
        cmd = ["dvc", "exp", "save", "--force"] + (["--name", save] if save else [])
        proc = _run(cmd)
        sys.stderr.write(proc.stdout + proc.stderr)
        if proc.returncode != 0:
            return proc.returncode
    left = dvc_out_of_date()
    if left:
        print(f"smt record: dvc still reports changes in {left}", file=sys.stderr)
        return 1
    print("smt record: dvc.lock matches the workspace", file=sys.stderr)
    return 0


def show_locks() -> int:
    """Stage runs in progress on this machine: the lock files held now, with their holders."""
    found = locks.held()
    for path, holder in found:
        print(f"{path}: {holder}")
    if not found:
        print("no stage run holds a lock", file=sys.stderr)
    return 0


def sync(params_path: str) -> int:
    """After a DVC checkout/pull/repro: when DVC says the workspace matches dvc.lock, make Snakemake agree
    (stamps marked as built, outputs touched in DAG order). Otherwise change nothing and say why."""
    left = dvc_out_of_date()
    if left:
        print(
            f"smt sync: DVC reports {left} out of date; nothing touched. "
            "Run `dvc checkout` or `dvc repro` (or snakemake) first.",
            file=sys.stderr,
        )
        return 1
    params = P.load(params_path)
    prepare(params)
    stamps.mark_all_built(params)
    proc = _run(["snakemake", "--touch", "--cores", "1", "--quiet"])
    sys.stderr.write(proc.stdout + proc.stderr)
    if proc.returncode != 0:
        return proc.returncode
    print("smt sync: Snakemake and DVC agree", file=sys.stderr)
    return 0


def affected(params_path: str, what: list[str]) -> int:
    """What a change reruns, as both tools will run it: for a file, its readers (a core module: every stage);
    for `key=value`, the instances whose params stamp differs or that are new under the new value; for a bare
    key, its readers. Each with everything downstream, in the graph of the params after the change."""
    params = P.load(params_path)
    changed = copy.deepcopy(params)
    roots: set[str] = set()
    for item in what:
        key, eq, value = item.partition("=")
        if eq:
            P.set_value(changed, key, yaml.safe_load(value))
        elif Path(item).exists():
            roots |= G.readers_of_file(params, item)
        else:
            P.get(params, key)  # a KeyError names an unknown key
            roots |= G.readers_of_key(params, key)
    if changed != params:
        P.validate(changed, f"{params_path} with {' '.join(w for w in what if '=' in w)}")
        roots |= G.changed_instances(params, changed)
    for iid in sorted(G.downstream(changed, roots)):
        print(iid)
    return 0


def download(benchmark: str, dest: str | None, all_documents: bool, base_url: str | None) -> int:
    import logging

    from smt.benchmarks import sources

    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    target = Path(dest or f"data/raw/{benchmark}")
    try:
        outcomes = sources.download(benchmark, target, all_documents, base_url)
    except sources.DownloadError as exc:
        print(f"smt download: {exc}", file=sys.stderr)
        return 1
    unverified = sorted(p for p, o in outcomes.items() if o == "unverified")
    print(f"smt download: {len(outcomes)} files in {target} ({len(unverified)} without a pinned hash)", file=sys.stderr)
    return 0


def run(args: argparse.Namespace) -> int:
    if args.command == "render-dvc":
        return render_dvc(args.params)
    if args.command == "render-rules":
        return render_rules()
    if args.command == "check":
        return check(args.params, args.profile)
    if args.command == "plan":
        from smt.pipeline import plan

        return plan.run(args.params, args.gpu, args.generation_mfu, args.train_mfu, args.json, args.parameters)
    if args.command == "refresh":
        derived.refresh(P.load(args.params))
        return 0
    if args.command == "record":
        return record(args.params, args.save)
    if args.command == "sync":
        return sync(args.params)
    if args.command == "locks":
        return show_locks()
    if args.command == "download":
        return download(args.benchmark, args.dest, args.all_documents, args.base_url)
    if args.command == "affected":
        return affected(args.params, args.what)
    if args.command == "serve":
        from smt.synth.serve import serve

        return serve(
            args.model, args.host, args.port, args.dtype, args.batch_size, args.api_key_env, args.served_model_name
        )
    raise SystemExit(f"unknown command {args.command}")
