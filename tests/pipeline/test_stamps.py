"""Params stamps change exactly when a stage's values change, and a reverted value is no change."""

from __future__ import annotations

import copy
import os
import time
from pathlib import Path

import pytest

from smt.pipeline import params as P
from smt.pipeline import stages as S
from smt.pipeline import stamps

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture()
def in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_stamp_rewritten_only_for_its_keys(in_tmp: Path) -> None:
    params = P.load(ROOT / "params.yaml")
    qa, train = S.stage("synth_qa"), S.stage("train")
    axes = {"benchmark": "demo", "recipe": "smt", "budget": "4000"}
    qa_stamp, train_stamp = stamps.refresh(qa, {"benchmark": "demo"}, params), stamps.refresh(train, axes, params)
    old = time.time() - 100
    for p in (qa_stamp, train_stamp):
        os.utime(p, (old, old))
    changed = copy.deepcopy(params)
    changed["train"]["learning_rate"] = 0.5
    stamps.refresh(qa, {"benchmark": "demo"}, changed)
    stamps.refresh(train, axes, changed)
    assert qa_stamp.stat().st_mtime == old
    assert train_stamp.stat().st_mtime > old
    assert '"train.learning_rate": 0.5' in train_stamp.read_text()


def test_reverted_value_gets_the_build_time_back(in_tmp: Path) -> None:
    params = P.load(ROOT / "params.yaml")
    st, axes = S.stage("mix"), {"benchmark": "demo", "recipe": "smt", "budget": "4000"}
    stamp = stamps.refresh(st, axes, params)
    built_at = time.time() - 100
    stamps.mark_built(st, axes, built_at)
    changed = copy.deepcopy(params)
    changed["mix"]["replay_fraction"] = 0.2
    stamps.refresh(st, axes, changed)
    assert stamp.stat().st_mtime > built_at
    stamps.refresh(st, axes, params)
    assert stamp.stat().st_mtime == pytest.approx(built_at)
