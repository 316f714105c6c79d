"""bench/training.py: a steady-state clock that leaves the warm-up steps out."""

from __future__ import annotations

import sys
import types

from helpers import ROOT

sys.path.insert(0, str(ROOT / "bench"))

import training


def test_the_clock_counts_only_the_steps_after_the_warm_up() -> None:
    clock = training.SteadyClock(warmup=2)
    clock.trainer = types.SimpleNamespace(_total_train_tokens=0)
    for step in range(1, 6):
        clock.trainer._total_train_tokens += 100 * step  # tokens of step `step`
        clock.on_step_end(None, types.SimpleNamespace(global_step=step, max_steps=5), None)
    assert clock.tokens == 300 + 400 + 500 and clock.seconds > 0
