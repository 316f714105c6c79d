"""One run per stage instance at a time, whoever starts it.

Snakemake, `dvc repro` and a stage command typed by hand know nothing of each other, and Snakemake's own lock
goes with its driver: after a killed driver and `snakemake --unlock`, a job that is still running (an orphan)
and a new copy of it would write the same outputs. So every run holds an exclusive `flock` on its instance's
lock file, `results/.locks/<stage>/<instance>.lock`, from before it claims GPUs until it has checked its
outputs; a second run fails at once with an error naming the instance and the holder (pid, host, command, start
time), which the lock file records. The lock goes with the process: a killed run leaves no stale lock.

A Snakemake shard job (`--shard i`) holds its instance's lock shared and its own shard's lock exclusive, so the
shards of one instance run side by side while a run of the whole instance (DVC's, or the merge) excludes them.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import socket
import sys
import time
from collections.abc import Iterator
from pathlib import Path

from smt.pipeline import stage as ST


class Busy(RuntimeError):
    """Another run holds the instance (or the shard); the message names it and its holder."""


def _holder(path: Path) -> str:
    try:
        found = json.loads(path.read_text() or "{}")
    except (OSError, ValueError):
        found = {}
    if not found:
        return "a process that did not record itself"
    return f"pid {found.get('pid')} on {found.get('host')}, `{found.get('command')}`, since {found.get('started')}"


def _probe(path: Path) -> bool:
    """Whether someone holds this lock file (taken and released at once when free)."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)
    return False


def _take(path: Path, mode: int, what: str, shards: list[Path]) -> int:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        fcntl.flock(fd, mode | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        held = [p for p in shards if p.exists() and _probe(p)] or [path]  # shard jobs, else a whole run
        raise Busy(
            f"{what} is being built by another run ({'; '.join(_holder(p) for p in held)}). Wait for it to finish, "
            f"or stop it if it is an orphan of a killed driver (the lock is {path})"
        ) from None
    if mode == fcntl.LOCK_EX:
        record = {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "command": " ".join(["python -m smt", *sys.argv[1:]]) if sys.argv[1:] else sys.argv[0],
            "started": time.strftime("%Y-%m-%d %H:%M:%S"),
        }
        os.ftruncate(fd, 0)
        os.pwrite(fd, (json.dumps(record) + "\n").encode(), 0)
    return fd


@contextlib.contextmanager
def hold(st: ST.Stage, axes: dict[str, str], shard: int | None = None) -> Iterator[None]:
    """Hold the instance (exclusive), or one of its shards (the instance shared, the shard exclusive)."""
    what = ST.instance_id(st, axes)
    instance = Path(ST.lock_path(st, axes))
    shards = sorted(instance.parent.glob(f"{instance.stem}.shard*.lock"))
    fds: list[int] = []
    try:
        if shard is None:
            fds.append(_take(instance, fcntl.LOCK_EX, what, shards))
        else:
            fds.append(_take(instance, fcntl.LOCK_SH, what, []))
            fds.append(_take(Path(ST.lock_path(st, axes, shard)), fcntl.LOCK_EX, f"{what} shard {shard}", []))
        yield
    finally:
        for fd in fds:
            os.close(fd)


def held(root: Path = Path("results/.locks")) -> list[tuple[str, str]]:
    """Lock files someone holds now, with their recorded holder (`python -m smt locks`)."""
    return [(str(p), _holder(p)) for p in sorted(root.glob("*/*.lock")) if _probe(p)]
