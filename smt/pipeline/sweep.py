"""python -m smt queue: queue a grid of DVC experiments for any params key, axes included.

`dvc exp run --queue -S key=a,b` queues one experiment per value (DVC's Hydra sweep syntax) and works for every
key that leaves the set of stage instances as it is (a learning rate, a retrieval setting). A key that changes an
axis (`mix.token_budgets`, `recipes`, `synth_docs.generators`, `benchmarks`) changes dvc.yaml as well, whose
cross-axis inputs are exact files (smt.pipeline.dvc_yaml), and DVC reads dvc.yaml as it was queued. So this
command takes the same `-S` arguments, expands the grid with DVC's own code, validates every point against the
schema before queueing any, and queues each with dvc.yaml rendered for it (`dvc exp run --queue` takes the
workspace's dvc.yaml as it is, and applies `-S` to params.yaml itself, comments kept). The workspace's dvc.yaml
is put back afterwards. `dvc queue start` (or `dvc exp run --run-all`) runs the queue.
"""

from __future__ import annotations

import difflib
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import yaml

from smt.pipeline import dvc_yaml
from smt.pipeline import params as P


def dotted_keys(tree: dict[str, Any], prefix: str = "") -> list[str]:
    """Every key of a params tree, dotted, inner ones included (`mix`, `mix.token_budgets`)."""
    found = []
    for key, value in tree.items():
        found.append(prefix + key)
        if isinstance(value, dict):
            found += dotted_keys(value, f"{prefix}{key}.")
    return found


def points(params_path: str, settings: list[str]) -> list[tuple[list[str], dict[str, Any]]]:
    """Each point of the grid: its overrides and the params they give, validated. DVC's parser and writer make
    the values (`1e-4` is a number, `[4000,8000]` a list), so what is checked is what the experiment runs."""
    from dvc.exceptions import InvalidArgumentError
    from dvc.utils.cli_parse import to_path_overrides
    from dvc.utils.hydra import apply_overrides, get_hydra_sweeps

    overrides = to_path_overrides(settings)
    others = sorted(set(overrides) - {params_path})
    if others:
        raise ValueError(f"smt queue: only {params_path} holds params; -S names {', '.join(others)}")
    known = set(dotted_keys(yaml.safe_load(Path(params_path).read_text())))
    for setting in overrides.get(params_path, []):
        key = setting.partition("=")[0].lstrip("+~")
        if key not in known:
            close = difflib.get_close_matches(key, sorted(known), n=1)
            hint = f" (did you mean {close[0]}?)" if close else ""
            raise ValueError(f"smt queue: -S {setting}: {params_path} has no key {key!r}{hint}")
    found = []
    for sweep in get_hydra_sweeps(overrides):
        point = sweep[params_path]
        with tempfile.TemporaryDirectory() as tmp:
            copy = Path(tmp) / "params.yaml"
            shutil.copyfile(params_path, copy)
            try:
                apply_overrides(copy, point)
            except InvalidArgumentError as exc:
                cause = exc.__cause__ or exc
                raise ValueError(f"smt queue: -S {' '.join(point)}: {cause}") from exc
            params = yaml.safe_load(copy.read_text())
        found.append((point, P.validate(params, f"{params_path} with {' '.join(point)}")))
    return found


def queue(params_path: str, settings: list[str], name: str | None) -> int:
    """Queue one experiment per point of the grid; nothing is queued when any point is invalid."""
    try:
        grid = points(params_path, settings)
    except (ValueError, P.ParamsError) as exc:
        print(exc, file=sys.stderr)
        return 2
    original = dvc_yaml.DVC_YAML.read_text()
    queued = []
    try:
        for i, (point, params) in enumerate(grid):
            dvc_yaml.write(params)
            cmd = ["dvc", "exp", "run", "--queue", *(arg for o in point for arg in ("-S", o))]
            if name:
                cmd += ["--name", f"{name}-{i + 1}" if len(grid) > 1 else name]
            proc = subprocess.run(cmd, check=False, text=True, capture_output=True)
            sys.stderr.write(proc.stdout + proc.stderr)
            if proc.returncode != 0:
                print(f"smt queue: `{' '.join(cmd)}` failed", file=sys.stderr)
                return proc.returncode
            queued.append(" ".join(point))
    finally:
        dvc_yaml.DVC_YAML.write_text(original)
    print(f"smt queue: {len(queued)} experiment(s) queued:\n  " + "\n  ".join(queued), file=sys.stderr)
    print("Run them with `dvc queue start` (or `dvc exp run --run-all`), then `dvc exp show`.", file=sys.stderr)
    return 0
