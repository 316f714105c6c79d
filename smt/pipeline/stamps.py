"""Params stamps: one small file per stage instance holding exactly the values of the keys it reads.

Snakemake decides reruns by modification time, and its own params trigger only works for outputs whose
metadata it recorded itself (not for outputs made by `dvc repro`). Each rule therefore lists its stamp as an
input. A stamp is rewritten only when its values change, so a params change makes exactly the readers of
that key out of date, in Snakemake as in DVC. When the values go back to those the outputs were built with
(recorded in `<stamp>.built`), the stamp gets the build's old time again, so a reverted edit is not a change.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

from smt import io
from smt.pipeline import derived
from smt.pipeline import graph as G
from smt.pipeline import params as P
from smt.pipeline import stage as ST
from smt.pipeline import stages as S


def _content(values: dict[str, Any]) -> str:
    return json.dumps(values, indent=2, sort_keys=True) + "\n"


def _built(stamp: Path) -> Path:
    return stamp.with_suffix(".built")


def values(st: ST.Stage, axes: dict[str, str], params: dict[str, Any]) -> dict[str, Any]:
    """What a stamp holds: the values of the instance's keys, and the content digest of each model folder or
    package it reads and of its stream's token target (smt.pipeline.derived; refreshed before), so that for
    Snakemake a re-downloaded model or a raised target is a change
    and a reverted one is not."""
    found = P.subset(params, st.keys(axes, params))
    paths = st.derived(axes)
    if paths:
        found["derived content"] = {path: derived.digest(path) for path in paths}
    return found


def refresh(st: ST.Stage, axes: dict[str, str], params: dict[str, Any]) -> Path:
    """Bring one stamp up to date with params; touch it only when the values differ."""
    stamp = Path(ST.stamp_path(st, axes))
    content = _content(values(st, axes, params))
    if stamp.exists() and stamp.read_text() == content:
        return stamp
    io.write_text(stamp, content)
    built = _built(stamp)
    if built.exists() and built.read_text() == content:
        mtime = built.stat().st_mtime
        os.utime(stamp, (mtime, mtime))
    return stamp


def refresh_all(params: dict[str, Any]) -> None:
    for st in S.STAGES:
        for axes in G.instances(st, params):
            refresh(st, axes, params)


def mark_built(st: ST.Stage, axes: dict[str, str], started: float) -> None:
    """Record that the outputs now match the stamp; date both to the start of the run (older than outputs)."""
    stamp = Path(ST.stamp_path(st, axes))
    built = _built(stamp)
    io.write_text(built, stamp.read_text())
    for path in (stamp, built):
        os.utime(path, (started, started))


def mark_all_built(params: dict[str, Any]) -> None:
    """After the outputs were reconciled by other means (dvc checkout + sync): stamps as built, dated old."""
    old = time.time() - 2
    for st in S.STAGES:
        for axes in G.instances(st, params):
            refresh(st, axes, params)
            mark_built(st, axes, old)
