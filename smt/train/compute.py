"""Compute: C = 2MD for generating D synthetic tokens with an M-parameter generator, plus 6ND for training an
N-parameter student on D tokens; parameter counts read from a model's files without loading it; GPU-hours at a
named GPU's dense bf16 peak and an assumed utilization."""

from __future__ import annotations

import json
import struct
from pathlib import Path
from typing import Any


def generation_compute(report: dict[str, Any], base: str, n_params: int) -> dict[str, Any]:
    """2MD for the synthetic data behind the mix: D from the generation manifests, M when the generator is the
    base model folder (otherwise unknown: a remote or other model)."""
    generation = report.get("generation") or {}
    tokens = generation.get("completion_tokens")
    models = generation.get("models") or []
    local = bool(models) and all(m.get("path") and Path(m["path"]).resolve() == Path(base).resolve() for m in models)
    found: dict[str, Any] = {"generated_tokens": tokens, "generator_parameters": n_params if local else None}
    if tokens is None:
        found["generation_flops_2md"] = None
        found["generation_note"] = "the mix report records no generation manifests"
    elif not local:
        found["generation_flops_2md"] = None
        ids = ", ".join(str(m.get("id")) for m in models) or "unknown"
        found["generation_note"] = f"generator {ids} is not the base model folder; its parameter count is unknown"
    else:
        found["generation_flops_2md"] = 2 * n_params * tokens
        found["generation_note"] = "all synthetic streams of the benchmark (shared by every token budget)"
    return found


# Dense (not sparse) bf16 tensor-core peaks, FLOP/s, from NVIDIA's datasheets: a short name (`smt plan --gpu`) ->
# the peak and the product names torch.cuda reports for it (bench/training.py's MFU).
GPUS: dict[str, tuple[float, tuple[str, ...]]] = {
    "H100-SXM": (989e12, ("NVIDIA H100 80GB HBM3",)),
    "H100-PCIe": (756e12, ("NVIDIA H100 PCIe",)),
    "H100-NVL": (835e12, ("NVIDIA H100 NVL",)),
    "H200": (989e12, ("NVIDIA H200",)),
    "H200-NVL": (835e12, ("NVIDIA H200 NVL",)),
    "GH200": (989e12, ("NVIDIA GH200 480GB",)),
    "A100-80GB": (312e12, ("NVIDIA A100-SXM4-80GB", "NVIDIA A100 80GB PCIe")),
    "A100-40GB": (312e12, ("NVIDIA A100-SXM4-40GB", "NVIDIA A100-PCIE-40GB")),
    "L40S": (362e12, ("NVIDIA L40S",)),
    "L40": (181e12, ("NVIDIA L40",)),
    "L4": (121e12, ("NVIDIA L4",)),
    "A10": (125e12, ("NVIDIA A10",)),
    "A40": (150e12, ("NVIDIA A40",)),
}
PEAK_BF16 = {name: peak for name, (peak, _) in GPUS.items()}


def device_peak(product_name: str | None) -> float | None:
    """The dense bf16 peak of a GPU by the exact name torch.cuda reports (None for an unknown one or no GPU)."""
    for peak, names in GPUS.values():
        if product_name and product_name.strip() in names:
            return peak
    return None


def parameter_count(path: str | Path) -> int:
    """Parameter count of a model folder (its safetensors headers: shapes only, no weights read) or of a GGUF
    file (its tensor table)."""
    path = Path(path)
    if path.suffix == ".gguf":
        import gguf

        return sum(int(t.n_elements) for t in gguf.GGUFReader(path).tensors)
    total = 0
    for weights in sorted(path.glob("*.safetensors")):
        with weights.open("rb") as fh:
            (size,) = struct.unpack("<Q", fh.read(8))
            header = json.loads(fh.read(size))
        for name, entry in header.items():
            if name != "__metadata__":
                count = 1
                for dim in entry["shape"]:
                    count *= dim
                total += count
    return total


def gpu_hours(flops: float, gpu: str, utilization: float) -> float:
    """Hours of one GPU of this kind to do `flops` at `utilization` of its dense bf16 peak."""
    if gpu not in PEAK_BF16:
        raise ValueError(f"unknown GPU {gpu!r}; known: {sorted(PEAK_BF16)}")
    return flops / (PEAK_BF16[gpu] * utilization) / 3600
