"""Distinct GPUs for concurrent Snakemake jobs on one machine.

Snakemake's `gpu` resource only counts: with `--resources gpu=4`, four jobs that each declare `gpu=1` may run
at once, but nothing tells each one *which* device to use, so all of them would pick device 0. Each Snakemake
rule therefore runs its stage as `SMT_JOB_GPUS={resources.gpu} python -m smt ...`, and before the stage
imports torch it claims that many devices here: an exclusive `flock` on one lock file per device, all or
none, held until the process (and any child it starts) exits, then sets `CUDA_VISIBLE_DEVICES` to them, with
`CUDA_DEVICE_ORDER=PCI_BUS_ID` so that CUDA numbers devices as `nvidia-smi` does (CUDA's default order puts the
fastest first, and index 1 would then be another card than nvidia-smi's 1).
A job that asks for no GPU gets `CUDA_VISIBLE_DEVICES=""`, so a CPU stage never lands on a busy device.

The devices to share are `SMT_GPUS` (e.g. `0,1,2,3`), else `CUDA_VISIBLE_DEVICES` (also what SLURM sets
for a job), else the indices `nvidia-smi` lists. Locks live in `SMT_GPU_LOCK_DIR` (default: the system
temp folder), one namespace per SLURM job, so that two SLURM jobs that both see their own device as `0`
do not wait for each other. Without `SMT_JOB_GPUS` (`dvc repro`, which runs one stage at a time, or a
stage started by hand) the environment is left as it is.
"""

from __future__ import annotations

import fcntl
import os
import re
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

REQUEST_VAR = "SMT_JOB_GPUS"
POOL_VAR = "SMT_GPUS"
LOCK_DIR_VAR = "SMT_GPU_LOCK_DIR"
WAIT_VAR = "SMT_GPU_WAIT_S"  # give up after this many seconds (unset or 0: wait as long as it takes)
POLL_S = 0.2


class GpuError(RuntimeError):
    """A job asks for more GPUs than the machine has, or could not get them in time."""


@dataclass
class Claim:
    """The devices one process holds; the locks go with the process."""

    requested: int | None
    devices: list[str]
    pool: list[str]
    source: str
    _fds: list[int] = field(default_factory=list, repr=False)

    def describe(self) -> str:
        return self._devices() + _slurm_job()

    def _devices(self) -> str:
        if self.requested is None:
            return f"GPUs as inherited (CUDA_VISIBLE_DEVICES={os.environ.get('CUDA_VISIBLE_DEVICES')!r})"
        if not self.pool:
            return f"GPUs requested {self.requested}; {self.source}"
        return (
            f"GPUs requested {self.requested}, CUDA_VISIBLE_DEVICES={','.join(self.devices)!r} "
            f"(from {len(self.pool)} in {self.source})"
        )

    def release(self) -> None:
        for fd in self._fds:
            os.close(fd)
        self._fds.clear()


def _slurm_job() -> str:
    job = os.environ.get("SLURM_JOB_ID")
    return f", SLURM job {job} (partition {os.environ.get('SLURM_JOB_PARTITION', '?')})" if job else ""


def _split(value: str) -> list[str]:
    return [d.strip() for d in value.split(",") if d.strip()]


def visible(env: dict[str, str] | None = None) -> tuple[list[str], str]:
    """The devices jobs on this machine share, and where that list came from."""
    env = os.environ if env is None else env
    for var in (POOL_VAR, "CUDA_VISIBLE_DEVICES"):
        if env.get(var, "").strip():
            return _split(env[var]), var
    smi = shutil.which("nvidia-smi", path=env.get("PATH"))
    if smi:
        proc = subprocess.run(
            [smi, "--query-gpu=index", "--format=csv,noheader"], capture_output=True, text=True, check=False
        )
        if proc.returncode == 0:
            return _split(proc.stdout.replace("\n", ",")), "nvidia-smi"
    return [], "no GPU list (SMT_GPUS, CUDA_VISIBLE_DEVICES, nvidia-smi)"


def lock_dir(env: dict[str, str] | None = None) -> Path:
    env = os.environ if env is None else env
    root = Path(env.get(LOCK_DIR_VAR) or Path(tempfile.gettempdir()) / "smt-gpu-locks")
    scope = f"slurm-{env['SLURM_JOB_ID']}" if env.get("SLURM_JOB_ID") else "host"
    return root / scope


def _lock_file(folder: Path, device: str) -> Path:
    return folder / (re.sub(r"[^A-Za-z0-9_.-]", "_", device) + ".lock")


def _try_lock(path: Path) -> int | None:
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        os.fchmod(fd, 0o666)  # shared by every user's jobs on the machine
    except PermissionError:
        pass
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    return fd


def claim(requested: int, who: str = "job", env: dict[str, str] | None = None) -> Claim:
    """Hold `requested` distinct devices of the shared list (all or none), waiting while they are busy."""
    env = os.environ if env is None else env
    pool, source = visible(env)
    if requested == 0:
        return Claim(0, [], pool, source)
    if requested > len(pool):
        raise GpuError(
            f"{who} asks for {requested} GPU(s) (Snakemake resources gpu={requested}) but {len(pool)} "
            f"{'is' if len(pool) == 1 else 'are'} visible ({source}: {','.join(pool) or 'none'}); "
            "lower the rule's gpu resource in the profile or run where the GPUs are"
        )
    folder = lock_dir(env)
    for part in (folder.parent, folder):
        if not part.is_dir():
            part.mkdir(parents=True, exist_ok=True)
            try:
                part.chmod(0o1777)  # like /tmp: any user's job may add its locks
            except PermissionError:
                pass
    wait = float(env.get(WAIT_VAR) or 0)
    started = time.monotonic()
    while True:
        fds: list[int] = []
        devices: list[str] = []
        for device in pool:
            fd = _try_lock(_lock_file(folder, device))
            if fd is not None:
                fds.append(fd)
                devices.append(device)
                if len(devices) == requested:
                    return Claim(requested, devices, pool, source, fds)
        for fd in fds:  # all or none: never sit on part of a request while another job waits for it
            os.close(fd)
        if wait and time.monotonic() - started > wait:
            raise GpuError(
                f"{who}: no {requested} free GPU(s) among {','.join(pool)} after {wait:g} s "
                f"(locks in {folder}); another job holds them"
            )
        time.sleep(POLL_S)


_HELD: list[Claim] = []


def assign(who: str = "job") -> Claim:
    """For a Snakemake job (SMT_JOB_GPUS set): claim its devices and set CUDA_VISIBLE_DEVICES for this
    process and its children. Call before torch initializes CUDA."""
    raw = os.environ.get(REQUEST_VAR, "").strip()
    if not raw:
        return Claim(None, [], [], "inherited")
    try:
        requested = int(raw)
    except ValueError:
        raise GpuError(f"{REQUEST_VAR}={raw!r}: expected a whole number of GPUs") from None
    if requested < 0:
        raise GpuError(f"{REQUEST_VAR}={raw!r}: expected a whole number of GPUs")
    held = claim(requested, who)
    if requested or held.pool:
        os.environ["CUDA_DEVICE_ORDER"] = "PCI_BUS_ID"
        os.environ["CUDA_VISIBLE_DEVICES"] = ",".join(held.devices)
    _HELD.append(held)
    return held


def held() -> Claim | None:
    """This process's claim, if Snakemake asked for one (None under `dvc repro` or by hand)."""
    return _HELD[-1] if _HELD else None


def hidden_from(claim: Claim | None) -> int:
    """GPUs the machine shares that a job asking for none cannot see: the profile gives its rule gpu=0."""
    return len(claim.pool) if claim is not None and claim.requested == 0 else 0
