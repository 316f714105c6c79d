"""GPU placement for concurrent Snakemake jobs: each job gets its own devices, never one another job holds.

No GPU is needed: the device lists are fake (SMT_GPUS, CUDA_VISIBLE_DEVICES, a stand-in `nvidia-smi`), the
processes, locks and Snakemake runs are real.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from helpers import ROOT, env, sh

from smt.pipeline import gpus

# A job: claim GPUs like `python -m smt <stage>` does, then mark each device busy with O_EXCL for a moment.
# If two jobs ever held the same device, the second os.open fails and the job exits non-zero.
PROBE = textwrap.dedent(
    """
    import json, os, sys, time
    from smt.pipeline import gpus

    out, busy = sys.argv[1], sys.argv[2]
    claim = gpus.assign("probe")
    marks = []
    for device in claim.devices:
        marks.append(os.open(os.path.join(busy, device), os.O_CREAT | os.O_EXCL | os.O_WRONLY))
    time.sleep(0.4)
    for device in claim.devices:
        os.unlink(os.path.join(busy, device))
    with open(out, "w") as f:
        json.dump({"devices": claim.devices, "cuda": os.environ.get("CUDA_VISIBLE_DEVICES"),
                   "order": os.environ.get("CUDA_DEVICE_ORDER")}, f)
    """
)


def job_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    e = env()
    for var in ("SMT_GPUS", "CUDA_VISIBLE_DEVICES", "SMT_JOB_GPUS", "SLURM_JOB_ID", "CUDA_DEVICE_ORDER"):
        e.pop(var, None)
    e.update(SMT_GPU_LOCK_DIR=str(tmp_path / "locks"), SMT_GPU_WAIT_S="120", PYTHONPATH=str(ROOT))
    e.update(extra)
    return e


def test_the_shared_devices_come_from_smt_gpus_then_cuda_visible_devices_then_nvidia_smi(tmp_path: Path) -> None:
    assert gpus.visible({"SMT_GPUS": "2, 3", "CUDA_VISIBLE_DEVICES": "0"}) == (["2", "3"], "SMT_GPUS")
    assert gpus.visible({"CUDA_VISIBLE_DEVICES": "GPU-aa,GPU-bb"}) == (["GPU-aa", "GPU-bb"], "CUDA_VISIBLE_DEVICES")
    fake = tmp_path / "bin" / "nvidia-smi"  # stands in for the driver's tool, which needs a GPU
    fake.parent.mkdir()
    fake.write_text("#!/bin/sh\nprintf '0\\n1\\n2\\n'\n")
    fake.chmod(0o755)
    assert gpus.visible({"PATH": str(fake.parent)}) == (["0", "1", "2"], "nvidia-smi")
    assert gpus.visible({"PATH": str(tmp_path)})[0] == []


def test_a_slurm_job_locks_in_its_own_namespace(tmp_path: Path) -> None:
    base = {"SMT_GPU_LOCK_DIR": str(tmp_path)}
    assert gpus.lock_dir(base) == tmp_path / "host"
    assert gpus.lock_dir({**base, "SLURM_JOB_ID": "42"}) == tmp_path / "slurm-42"


def test_asking_for_more_gpus_than_visible_fails_before_the_stage_runs(tmp_path: Path) -> None:
    (tmp_path / "params.yaml").write_text((ROOT / "params.yaml").read_text())
    proc = subprocess.run(
        [sys.executable, "-m", "smt", "report"],
        cwd=tmp_path,
        env=job_env(tmp_path, SMT_GPUS="0", SMT_JOB_GPUS="2"),
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode != 0
    assert "smt report asks for 2 GPU(s)" in proc.stderr and "1 is visible (SMT_GPUS: 0)" in proc.stderr
    written = [p.relative_to(tmp_path).as_posix() for p in (tmp_path / "results").rglob("*") if p.is_file()]
    assert written == ["results/.locks/report/all.lock"], "nothing but the run's lock when the GPUs are not there"


def test_a_cpu_job_sees_no_gpu_and_an_unmanaged_run_is_left_alone(tmp_path: Path) -> None:
    probe = tmp_path / "probe.py"
    probe.write_text(PROBE)
    (tmp_path / "busy").mkdir()
    for extra, expected, order in (
        ({"SMT_GPUS": "0,1", "SMT_JOB_GPUS": "0"}, "", "PCI_BUS_ID"),
        ({"CUDA_VISIBLE_DEVICES": "1"}, "1", None),  # dvc repro or by hand: no request, nothing changed
    ):
        out = tmp_path / "out.json"
        subprocess.run(
            [sys.executable, str(probe), str(out), str(tmp_path / "busy")],
            env=job_env(tmp_path, **extra),
            check=True,
        )
        assert json.loads(out.read_text()) == {"devices": [], "cuda": expected, "order": order}


def test_concurrent_processes_never_hold_the_same_device(tmp_path: Path) -> None:
    probe = tmp_path / "probe.py"
    probe.write_text(PROBE)
    busy = tmp_path / "busy"
    busy.mkdir()
    requests = [1, 2, 1, 1, 2, 1, 1, 1]
    procs = [
        subprocess.Popen(
            [sys.executable, str(probe), str(tmp_path / f"job{i}.json"), str(busy)],
            env=job_env(tmp_path, SMT_GPUS="0,1,2", SMT_JOB_GPUS=str(n)),
            stderr=subprocess.PIPE,
            text=True,
        )
        for i, n in enumerate(requests)
    ]
    errors = [p.communicate(timeout=180)[1] for p in procs]
    assert [p.returncode for p in procs] == [0] * len(procs), errors
    for i, n in enumerate(requests):
        got = json.loads((tmp_path / f"job{i}.json").read_text())
        assert len(set(got["devices"])) == n and set(got["devices"]) <= {"0", "1", "2"}
        assert got["cuda"] == ",".join(got["devices"]) and got["order"] == "PCI_BUS_ID"  # nvidia-smi's numbering


def test_snakemake_jobs_that_run_together_get_distinct_devices(tmp_path: Path) -> None:
    """Snakemake's local executor with a gpu resource, the command prefixed as smt.workflow.command does."""
    (tmp_path / "probe.py").write_text(PROBE)
    (tmp_path / "busy").mkdir()
    (tmp_path / "Snakefile").write_text(
        textwrap.dedent(
            f"""
            rule all:
                input: expand("out/{{i}}.json", i=range(4))

            rule job:
                output: "out/{{i}}.json"
                resources: gpu=1
                shell: "{gpus.REQUEST_VAR}={{resources.gpu}} python probe.py {{output}} busy"
            """
        )
    )
    proc = subprocess.run(
        ["snakemake", "--cores", "4", "--resources", "gpu=2", "--workflow-profile", "none"],
        cwd=tmp_path,
        env=job_env(tmp_path, SMT_GPUS="0,1"),
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    seen = [json.loads((tmp_path / f"out/{i}.json").read_text())["cuda"] for i in range(4)]
    assert sorted(set(seen)) == ["0", "1"], seen


def test_each_rule_tells_its_stage_the_gpu_count_the_profile_gives_it(small_workspace: Path) -> None:
    out = sh("snakemake -n -p --forceall --workflow-profile profiles/gpu", small_workspace).stdout  # built or not
    assert "SMT_JOB_GPUS=1 python -m smt train" in out
    assert "SMT_JOB_GPUS=4 python -m smt synth_qa" in out
    assert "SMT_JOB_GPUS=0 python -m smt ingest" in out


def test_gpu_wait_can_be_bounded(tmp_path: Path) -> None:
    holder = gpus.claim(1, env={"SMT_GPUS": "0", "SMT_GPU_LOCK_DIR": str(tmp_path)})
    try:
        with pytest.raises(gpus.GpuError, match="no 1 free GPU"):
            gpus.claim(1, env={"SMT_GPUS": "0", "SMT_GPU_LOCK_DIR": str(tmp_path), "SMT_GPU_WAIT_S": "0.5"})
    finally:
        holder.release()
    again = gpus.claim(1, env={"SMT_GPUS": "0", "SMT_GPU_LOCK_DIR": str(tmp_path), "SMT_GPU_WAIT_S": "0.5"})
    assert again.devices == ["0"]
    again.release()


def test_a_training_job_without_gpus_on_a_gpu_machine_says_it_trains_on_the_cpu() -> None:
    from smt.stages import train

    hidden = gpus.Claim(0, [], ["0", "1", "2"], "nvidia-smi")
    assert gpus.hidden_from(hidden) == 3
    assert "holds no GPU although 3 are on this machine" in (train.cpu_fallback(hidden) or "")
    assert train.cpu_fallback(gpus.Claim(0, [], [], "no GPU list")) is None  # a CPU machine: nothing to say
    assert train.cpu_fallback(gpus.Claim(2, ["0", "1"], ["0", "1", "2"], "nvidia-smi")) is None
    assert train.cpu_fallback(None) is None  # dvc repro or by hand: the environment as it is
