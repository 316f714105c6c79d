"""Several engines over the GPUs a job holds, each in its own process: data parallel generation.

Each engine process sees only its own devices (CUDA_VISIBLE_DEVICES set before torch or vLLM loads) and builds
one backend (a transformers replica, or a vLLM engine with its tensor-parallel size). A call deals the requests
into contiguous runs, one per engine (a document's requests, which share a prompt prefix, stay together), runs
them at once and returns the completions in request order. Every request carries its own seed, so which engine
serves it changes nothing where the backend is batch-invariant (see README, "Shards and resuming").

The processes talk over a socket pair (`python -m smt.synth.backends.pool <fd>`), not stdout, which vLLM logs
to. An engine process exits when the pool is closed or when its parent goes away.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import traceback
from multiprocessing.connection import Connection
from multiprocessing.util import Finalize
from pathlib import Path
from typing import Any

from smt.synth.generation import BackendSettings, Completion, Request, Sampling, Stats

ROOT = Path(__file__).resolve().parents[3]  # the folder that holds this `smt` package


def split(requests: list[Request], parts: int) -> list[list[Request]]:
    """Contiguous runs of nearly equal length (the first ones one longer)."""
    size, extra = divmod(len(requests), parts)
    runs, start = [], 0
    for i in range(parts):
        end = start + size + (i < extra)
        runs.append(requests[start:end])
        start = end
    return runs


class EnginePool:
    """A backend made of one engine process per device group; `generate` splits each call among them."""

    def __init__(self, settings: BackendSettings, groups: list[list[str]], tensor_parallel: int = 1) -> None:
        self.name = settings.backend
        self.stats = Stats()
        self.groups = groups
        self._procs: list[subprocess.Popen[bytes]] = []
        self._conns: list[Connection] = []
        Finalize(self, EnginePool._shutdown, args=(self._procs, self._conns), exitpriority=10)
        threads = max(1, (os.cpu_count() or 1) // len(groups))  # CPU engines share the cores, not oversubscribe
        for devices in groups:
            self._start(settings, devices, tensor_parallel, threads)
        self.engines = [self._receive(i) for i in range(len(groups))]  # each engine's describe()
        self.batch_size = self.engines[0]["batch_size"] * len(groups)  # a full batch for every engine per call

    def _start(self, settings: BackendSettings, devices: list[str], tensor_parallel: int, threads: int) -> None:
        parent, child = socket.socketpair()
        env = dict(os.environ)
        env.update(CUDA_DEVICE_ORDER="PCI_BUS_ID", CUDA_VISIBLE_DEVICES=",".join(devices))
        if not devices:
            env["OMP_NUM_THREADS"] = str(threads)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH", "")) if p)
        command = [sys.executable, "-m", "smt.synth.backends.pool", str(child.fileno())]
        self._procs.append(subprocess.Popen(command, env=env, pass_fds=[child.fileno()]))
        child.close()
        conn = Connection(parent.detach())
        conn.send((settings, tensor_parallel))
        self._conns.append(conn)

    def _receive(self, index: int) -> Any:
        try:
            status, payload = self._conns[index].recv()
        except (EOFError, OSError):
            code = self._procs[index].poll()
            raise RuntimeError(f"generation engine {index} (devices {self.groups[index]}) exited ({code})") from None
        if status == "error":
            raise RuntimeError(f"generation engine {index} (devices {self.groups[index]}) failed:\n{payload}")
        return payload

    def describe(self) -> dict[str, Any]:
        first = {k: v for k, v in self.engines[0].items() if k not in ("device", "batch_size")}
        return {**first, "engines": len(self.engines), "devices": [",".join(g) or "cpu" for g in self.groups]}

    def generate(
        self, requests: list[Request], sampling: Sampling, desc: str = "generate", progress: bool = True
    ) -> list[Completion]:
        started = time.perf_counter()
        runs = split(requests, len(self._conns))
        busy = [i for i, run in enumerate(runs) if run]
        for i in busy:
            self._conns[i].send(("generate", runs[i], sampling))
        done: list[Completion] = []
        for i in busy:
            done += self._receive(i)
        for c in done:
            self.stats.prompt_tokens += c.prompt_tokens
            self.stats.completion_tokens += c.completion_tokens
        self.stats.requests += len(requests)
        self.stats.seconds += time.perf_counter() - started
        return done

    def close(self) -> None:
        EnginePool._shutdown(self._procs, self._conns)

    @staticmethod
    def _shutdown(procs: list[subprocess.Popen[bytes]], conns: list[Connection]) -> None:
        for conn in conns:
            try:
                conn.send(None)
                conn.close()
            except OSError:
                pass
        for proc in procs:
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        conns.clear()
        procs.clear()


def serve(fd: int) -> None:
    """One engine process: build the backend, then answer `generate` calls until told to stop."""
    from smt.synth.backends import make_single

    conn = Connection(fd)
    try:
        settings, tensor_parallel = conn.recv()
        backend = make_single(settings, tensor_parallel)
        conn.send(("ok", {**backend.describe(), "batch_size": backend.batch_size}))
    except Exception:
        conn.send(("error", traceback.format_exc()))
        return
    while True:
        try:
            message = conn.recv()
        except (EOFError, OSError):
            return  # the parent went away
        if message is None:
            return
        _, requests, sampling = message
        try:
            conn.send(("ok", backend.generate(requests, sampling, progress=False)))
        except Exception:
            conn.send(("error", traceback.format_exc()))


if __name__ == "__main__":
    serve(int(sys.argv[1]))
