"""python -m smt compare: the accuracy of every condition in several experiments as one markdown table, with the
params that differ, read from `dvc exp show --json` (DVC's own record of the runs, not a second bookkeeping).

Rows are the conditions of results/metrics.json (`<benchmark>.<model>.<condition>`, smt/eval/summary.py) as
"accuracy% [low, high]", then the number of questions, then every params.yaml key whose value is not the same in
all the experiments shown. Columns are the baseline commit, its experiments, and the workspace when it differs
from the baseline.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from dataclasses import dataclass
from typing import Any

METRICS_FILE = "results/metrics.json"
PARAMS_FILE = "params.yaml"
_SCORE = re.compile(r"^(?P<benchmark>[^.]+)\.(?P<model>[^.]+)\.(?P<condition>cb|rag)$")
CONDITION_NAMES = {"cb": "closed-book", "rag": "RAG"}


@dataclass
class Run:
    """One column: an experiment, the baseline commit or the workspace."""

    label: str
    names: tuple[str, ...]  # what selects it on the command line: its name, rev, short rev
    metrics: dict[str, Any] | None
    params: dict[str, Any]
    state: str = ""  # Queued, Running, Failed: no results yet


def flatten(tree: Any, prefix: str = "") -> dict[str, Any]:
    """Nested keys joined with dots, as DVC names metrics and params columns."""
    if not isinstance(tree, dict):
        return {prefix.rstrip("."): tree}
    found: dict[str, Any] = {}
    for key, value in tree.items():
        found.update(flatten(value, f"{prefix}{key}."))
    return found


def _file_data(data: dict[str, Any] | None, group: str, path: str) -> dict[str, Any] | None:
    entry = ((data or {}).get(group) or {}).get(path) or {}
    return flatten(entry["data"]) if isinstance(entry.get("data"), dict) else None


def _run(entry: dict[str, Any], label: str, state: str = "") -> Run:
    rev = entry.get("rev", "")
    data = entry.get("data")
    names = tuple(n for n in (entry.get("name"), rev, rev[:7]) if n)
    return Run(label, names, _file_data(data, "metrics", METRICS_FILE), _file_data(data, "params", PARAMS_FILE) or {},
               state)  # fmt: skip


def runs(shown: list[dict[str, Any]]) -> list[Run]:
    """The columns from `dvc exp show --json`: each baseline and its experiments; the workspace only where it
    differs from the baseline it sits on."""
    found: list[Run] = []
    workspace: Run | None = None
    for baseline in shown:
        if baseline.get("rev") == "workspace":
            workspace = _run(baseline, "workspace")
            continue
        base = _run(baseline, baseline.get("name") or baseline.get("rev", "")[:7])
        if workspace and (workspace.metrics, workspace.params) != (base.metrics, base.params):
            found.append(workspace)
        workspace = None
        found.append(base)
        for exp in baseline.get("experiments") or []:
            state = ((exp.get("executor") or {}).get("state") or "").capitalize()
            for rev in exp.get("revs") or []:
                found.append(_run(rev, rev.get("name") or rev.get("rev", "")[:7], "" if state == "Success" else state))
    if workspace:
        found.append(workspace)
    return found


def select(found: list[Run], wanted: list[str]) -> list[Run]:
    """The runs named on the command line (by experiment name, branch, or a rev prefix), in that order."""
    if not wanted:
        return found
    chosen = []
    for name in wanted:
        match = [r for r in found if name in r.names or any(len(name) >= 4 and n.startswith(name) for n in r.names)]
        if not match:
            known = ", ".join(r.label for r in found) or "none"
            raise LookupError(f"smt compare: no experiment {name!r} in `dvc exp show` (it lists: {known})")
        chosen.append(match[0])
    return chosen


def _pct(value: float) -> str:
    return f"{100 * value:.1f}"


def _cell(metrics: dict[str, Any] | None, key: str, state: str) -> str:
    if metrics is None:
        return state.lower() or "no results"
    if metrics.get(key) is None:
        return "n/a"
    lo, hi = metrics.get(f"{key}_lo"), metrics.get(f"{key}_hi")
    interval = f" [{_pct(lo)}, {_pct(hi)}]" if lo is not None and hi is not None else ""
    return f"{_pct(metrics[key])}{interval}"


def _value(value: Any) -> str:
    return "(absent)" if value is None else json.dumps(value) if isinstance(value, (list, dict)) else str(value)


def table(chosen: list[Run]) -> str:
    """The markdown table: conditions x runs, then the questions scored and the params that differ."""
    scores = list(dict.fromkeys(k for r in chosen for k in (r.metrics or {}) if _SCORE.match(k)))
    counts = list(dict.fromkeys(k for r in chosen for k in (r.metrics or {}) if k.endswith(".n")))
    keys = list(dict.fromkeys(k for r in chosen for k in r.params))
    differ = [k for k in keys if len({json.dumps(r.params.get(k), sort_keys=True) for r in chosen}) > 1]
    lines = [
        "| accuracy % [95% interval] | " + " | ".join(r.label for r in chosen) + " |",
        "|---|" + "---|" * len(chosen),
    ]
    for key in scores:
        m = _SCORE.match(key)
        assert m
        label = f"{m['benchmark']}: {m['model']}, {CONDITION_NAMES[m['condition']]}"
        lines.append(f"| {label} | " + " | ".join(_cell(r.metrics, key, r.state) for r in chosen) + " |")
    for key in counts:
        lines.append(f"| {key.removesuffix('.n')}: questions | "
                     + " | ".join(_value((r.metrics or {}).get(key)) for r in chosen) + " |")  # fmt: skip
    for key in differ:
        lines.append(f"| `{key}` | " + " | ".join(_value(r.params.get(key)) for r in chosen) + " |")
    if not differ and len(chosen) > 1:
        lines.append("| (params) | " + " | ".join("same" for _ in chosen) + " |")
    return "\n".join(lines) + "\n"


def compare(wanted: list[str], extra: list[str]) -> int:
    """Print the table for the experiments named (default: all that `dvc exp show` lists)."""
    proc = subprocess.run(["dvc", "exp", "show", "--json", *extra], check=False, text=True, capture_output=True)
    if proc.returncode != 0:
        print(f"smt compare: `dvc exp show --json` failed:\n{proc.stderr}", file=sys.stderr)
        return proc.returncode
    try:
        chosen = select(runs(json.loads(proc.stdout or "[]")), wanted)
    except LookupError as exc:
        print(exc, file=sys.stderr)
        return 2
    if not chosen:
        print("smt compare: `dvc exp show` lists no runs (record one with `python -m smt record --save NAME`)",
              file=sys.stderr)  # fmt: skip
        return 1
    sys.stdout.write(table(chosen))
    return 0
