"""GPU peaks and GPU-hours (smt/train/compute.py), shared by `smt plan` and bench/training.py's MFU."""

from __future__ import annotations

import pytest

from smt.train.compute import PEAK_BF16, device_peak, gpu_hours


def test_peaks_are_matched_by_exact_product_name() -> None:
    """An H100 PCIe is not an H100 SXM, an L40 not an L4, and a part of a name matches nothing."""
    assert device_peak("NVIDIA H100 80GB HBM3") == 989e12  # SXM
    assert device_peak("NVIDIA H100 PCIe") == 756e12
    assert device_peak("NVIDIA L40") == 181e12 and device_peak("NVIDIA L4") == 121e12
    assert device_peak("NVIDIA L40S") == 362e12 and device_peak("NVIDIA H200") == 989e12
    assert device_peak("NVIDIA H100") is None
    assert device_peak("NVIDIA GeForce RTX 4090") is None and device_peak(None) is None


def test_gpu_hours_at_a_utilization_of_the_dense_peak() -> None:
    assert PEAK_BF16["H100-SXM"] == device_peak("NVIDIA H100 80GB HBM3")
    assert gpu_hours(989e12 * 3600, "H100-SXM", 1.0) == pytest.approx(1.0)
    assert gpu_hours(989e12 * 3600, "H100-SXM", 0.25) == pytest.approx(4.0)
    with pytest.raises(ValueError, match="unknown GPU 'B300'; known: "):
        gpu_hours(1.0, "B300", 0.5)
