"""The GPU smoke script's CPU mode, as CI runs it: every check a CPU can run passes on tiny models, the rest are
skipped with their reason, and one JSON file holds it all."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from helpers import ROOT, env

from smt.train import flops, sft


def test_the_smoke_script_runs_its_cpu_checks(base_model: Path, tmp_path: Path) -> None:
    out = tmp_path / "gpu_smoke.json"
    proc = subprocess.run(
        [sys.executable, "bench/gpu_smoke.py", "--cpu", "--base", str(base_model), "--out", str(out)],
        cwd=ROOT,
        env={**env(), "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    result = json.loads(out.read_text())
    checks = result["checks"]
    assert result["mode"] == "cpu" and result["machine"]["cpus"]
    status = {name: c["status"] for name, c in checks.items()}
    assert status == {
        "transformers_batch": "passed",
        "serve": "passed",
        "train_resume": "passed",
        "fsdp": "skipped",
        "scorers": "passed",
        "scorers_gpu_vs_cpu": "skipped",
        "mfu": "passed",
        "vllm": "skipped",
        "faiss_gpu": "skipped",
    }
    batch = checks["transformers_batch"]
    assert batch["identical"] == batch["of"] == 16 and batch["batch_invariant_claimed"] is True
    train = checks["train_resume"]
    assert train["resumed_from_step"] >= 1 and train["loss_steps"] == [1, 2, 3, 4]
    assert train["precision"] == sft.precision("auto")  # bf16 on a CPU with AMX-BF16, else fp32
    assert train["checkpoints_removed"] and train["tensors_changed"] > 0
    assert "trainer_state.json" in train["checkpoint_files"]
    scored = checks["scorers"]
    assert scored["device"] == "cpu" and scored["dtype"] == "float32" and scored["questions"] == 8
    assert all(0 <= scored[f"{name}_correct"] <= 8 for name in ("letter", "option_loglik", "generate"))
    assert "no CUDA device" in checks["scorers_gpu_vs_cpu"]["reason"]
    mfu = checks["mfu"]
    assert mfu["gradient_checkpointing"] is False and mfu["timed_steps"] == 2 and mfu["tokens"] == 2 * 2 * 64
    tiny = flops.shape(json.loads((ROOT / "bench/configs/llama-tiny.json").read_text()))
    assert mfu["flops_per_token"] == flops.training_per_token(tiny, 64) < mfu["six_n_per_token"]  # untied embedding
    assert mfu["mfu"] is None and "attended" in mfu["flops_formula"]  # no GPU, no peak
    assert "CUDA" in checks["fsdp"]["reason"] and checks["serve"]["usage"]["completion_tokens"] > 0
