"""A real one-node SLURM cluster on loopback, in a folder of its own, for tests.

munged with its own key and socket, slurmctld and slurmd in the foreground, its own ports, a `cpu` and a
`gpu` partition (the names profiles/slurm uses) and fake GPUs (gres `File=` naming character device nodes
made like /dev/nvidia<i>, never opened), so `sbatch --gpus=N` is granted and SLURM sets CUDA_VISIBLE_DEVICES
as on a GPU node.
`SlurmdParameters=config_overrides` lets the node advertise the CPUs, memory and GPUs that the profile's
paper-scale requests name; `Snakemake --jobs` keeps the real load to what the machine has.

The daemons are started as children and stopped by PID; every wait is bounded. `start()` raises
ClusterUnavailable, saying which part could not start, where this machine cannot run them.
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import socket
import stat
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

INSTALL = Path(__file__).with_name("install_slurm.sh")
CHAR_DEVICES = ("/dev/null", "/dev/zero", "/dev/full", "/dev/urandom", "/dev/random", "/dev/tty")


class ClusterUnavailable(RuntimeError):
    """The daemons cannot run on this machine (the message says which and why)."""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _tool(name: str) -> str:
    found = shutil.which(name) or (f"/usr/sbin/{name}" if Path(f"/usr/sbin/{name}").exists() else None)
    if not found:
        raise ClusterUnavailable(f"{name} is not installed")
    return found


def _tail(path: Path, lines: int = 15) -> str:
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:]) if path.exists() else "(no log)"


class SlurmCluster:
    def __init__(self, cpus: int = 64, mem_mb: int = 1_000_000, gpus: int = 8) -> None:
        self.cpus, self.mem_mb, self.gpus = cpus, mem_mb, gpus
        self.root = Path(tempfile.mkdtemp(prefix="smt-slurm-"))
        self.root.chmod(0o755)  # munged refuses sockets in folders others cannot search
        self.conf = self.root / "slurm.conf"
        self.procs: dict[str, subprocess.Popen[bytes]] = {}

    # ------------------------------------------------------------------ environment for clients and jobs

    def env(self) -> dict[str, str]:
        """SLURM_CONF for the clients, and an `srun` first on PATH that sets it again: the job-step plugin
        clears every SLURM_* variable before its inner srun."""
        return {"SLURM_CONF": str(self.conf), "PATH": f"{self.root / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}"}

    def shell_prefix(self) -> str:
        bin_dir = self.root / "bin"
        return f"SLURM_CONF={self.conf} PATH={bin_dir}:$PATH "

    def run(self, *cmd: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            cmd, env={**os.environ, **self.env()}, capture_output=True, text=True, timeout=timeout, check=False
        )

    # ------------------------------------------------------------------------------------- start / stop

    def start(self) -> SlurmCluster:
        install = subprocess.run(["bash", str(INSTALL)], capture_output=True, text=True, timeout=600, check=False)
        if install.returncode != 0:
            raise ClusterUnavailable(f"cannot install SLURM: {install.stderr.strip() or install.stdout.strip()}")
        try:
            self._start_munge()
            self._write_config()
            self._spawn("slurmctld", [_tool("slurmctld"), "-D", "-i", "-f", str(self.conf)])
            self._spawn("slurmd", [_tool("slurmd"), "-D", "-N", "localhost", "-f", str(self.conf)])
            self._wait_idle()
        except BaseException:
            self.stop()
            raise
        return self

    def _spawn(self, name: str, cmd: list[str]) -> None:
        log = (self.root / "log" / f"{name}.out").open("wb")
        self.procs[name] = subprocess.Popen(
            cmd, cwd=self.root, stdout=log, stderr=subprocess.STDOUT, env={**os.environ, **self.env()}
        )

    def _start_munge(self) -> None:
        munge = self.root / "munge"
        (self.root / "log").mkdir()
        munge.mkdir(mode=0o755)
        key = munge / "munge.key"
        key.write_bytes(secrets.token_bytes(1024))
        key.chmod(0o600)
        self.socket = munge / "munge.sock"
        self._spawn(
            "munged",
            [
                _tool("munged"),
                "-F",
                f"--socket={self.socket}",
                f"--key-file={key}",
                f"--log-file={munge / 'munged.log'}",
                f"--pid-file={munge / 'munged.pid'}",
                f"--seed-file={munge / 'munged.seed'}",
            ],
        )
        self._wait(lambda: self.socket.exists(), 15, "munged", munge / "munged.log")

    def _write_config(self) -> None:
        for sub in ("state", "spool", "bin"):
            (self.root / sub).mkdir()
        devices = []
        for i in range(self.gpus):
            node = self.root / f"nvidia{i}"
            try:  # the numbers of /dev/nvidia<i>; nothing ever opens them
                os.mknod(node, stat.S_IFCHR | 0o600, os.makedev(195, i))
            except PermissionError:
                node.symlink_to(CHAR_DEVICES[i % len(CHAR_DEVICES)])
            devices.append(f"NodeName=localhost Name=gpu File={node}")
        (self.root / "gres.conf").write_text("AutoDetect=off\n" + "\n".join(devices) + "\n")
        r = self.root
        self.conf.write_text(
            f"""ClusterName=smttest
SlurmctldHost={socket.gethostname()}(127.0.0.1)
SlurmctldPort={_free_port()}
SlurmdPort={_free_port()}
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
AuthInfo=socket={self.socket}
CredType=cred/munge
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
SchedulerType=sched/backfill
SchedulerParameters=batch_sched_delay=0
SlurmdParameters=config_overrides
MpiDefault=none
ReturnToService=2
MinJobAge=300
KillWait=5
StateSaveLocation={r / "state"}
SlurmdSpoolDir={r / "spool"}
SlurmctldPidFile={r / "slurmctld.pid"}
SlurmdPidFile={r / "slurmd.pid"}
SlurmctldLogFile={r / "log" / "slurmctld.log"}
SlurmdLogFile={r / "log" / "slurmd.log"}
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
GresTypes=gpu
NodeName=localhost NodeAddr=127.0.0.1 CPUs={self.cpus} RealMemory={self.mem_mb} Gres=gpu:{self.gpus} State=UNKNOWN
PartitionName=cpu Nodes=localhost Default=YES MaxTime=INFINITE State=UP
PartitionName=gpu Nodes=localhost MaxTime=INFINITE State=UP
"""
        )
        srun = self.root / "bin" / "srun"
        srun.write_text(f'#!/bin/sh\nexport SLURM_CONF="{self.conf}"\nexec {_tool("srun")} "$@"\n')
        srun.chmod(0o755)

    def _wait(self, ready: Callable[[], bool], seconds: float, name: str, log: Path) -> None:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            if ready():
                return
            dead = [n for n, p in self.procs.items() if p.poll() is not None]
            if dead:
                break
            time.sleep(0.3)
        out = self.root / "log" / f"{name}.out"
        raise ClusterUnavailable(
            f"{name} did not start within {seconds:g} s:\n{_tail(log)}\n{_tail(out) if out != log else ''}"
        )

    def _wait_idle(self) -> None:
        def idle() -> bool:
            proc = self.run("sinfo", "-h", "-N", "-o", "%T", timeout=10)
            return proc.returncode == 0 and proc.stdout.split()[:1] == ["idle"]

        ctld, slurmd = self.root / "log" / "slurmctld.log", self.root / "log" / "slurmd.log"
        try:
            self._wait(idle, 45, "slurmctld", ctld)
        except ClusterUnavailable as exc:
            raise ClusterUnavailable(f"{exc}\nslurmd:\n{_tail(slurmd)}") from None

    def stop(self) -> None:
        if "slurmctld" in self.procs and self.procs["slurmctld"].poll() is None:
            self.run("scancel", "--user", str(os.getuid()), timeout=10)
        for name in ("slurmd", "slurmctld", "munged"):
            proc = self.procs.pop(name, None)
            if proc is None or proc.poll() is not None:
                continue
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)
        shutil.rmtree(self.root, ignore_errors=True)

    def logs(self) -> str:
        return "\n".join(f"--- {p.name}\n{_tail(p, 30)}" for p in sorted((self.root / "log").glob("*.log")))
