"""bench/training.py: dense bf16 peaks by exact product name (an H100 PCIe is not an H100 SXM, an L40 not an
L4), and a steady-state clock that leaves the warm-up steps out."""

from __future__ import annotations

import sys
import types

from helpers import ROOT

sys.path.insert(0, str(ROOT / "bench"))

import training


def test_peaks_are_matched_by_exact_product_name() -> None:
    assert training.peak_flops("NVIDIA H100 80GB HBM3") == 989e12  # SXM
    assert training.peak_flops("NVIDIA H100 PCIe") == 756e12
    assert training.peak_flops("NVIDIA L40") == 181e12 and training.peak_flops("NVIDIA L4") == 121e12
    assert training.peak_flops("NVIDIA L40S") == 362e12 and training.peak_flops("NVIDIA H200") == 989e12
    assert training.peak_flops("NVIDIA H100") is None  # no guessing from a part of the name
    assert training.peak_flops("NVIDIA GeForce RTX 4090") is None and training.peak_flops(None) is None


def test_the_clock_counts_only_the_steps_after_the_warm_up() -> None:
    clock = training.SteadyClock(warmup=2)
    clock.trainer = types.SimpleNamespace(_total_train_tokens=0)
    for step in range(1, 6):
        clock.trainer._total_train_tokens += 100 * step  # tokens of step `step`
        clock.on_step_end(None, types.SimpleNamespace(global_step=step, max_steps=5), None)
    assert clock.tokens == 300 + 400 + 500 and clock.seconds > 0
