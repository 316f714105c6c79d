"""One shard's generation: the completions a generator asks for, from the stream's journal when it has them (same
request, same digest; any shard's file, from this run or an earlier one), else from the backend, which hands over
each completion as soon as it is finished; it is journaled there (smt.synth.journal), so what a crash can lose is
only what was still being generated."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from tqdm import tqdm

from smt import faults
from smt.synth import journal
from smt.synth.generation import Backend, Completion, Request, Sampling


class ShardRun:
    """The `complete` function a shard's generator calls, step by step; the backend is called in chunks of its
    batch size, and the counts of resumed and generated completions and tokens go into the shard's manifest."""

    def __init__(
        self, label: str, partial: journal.Partial, backend: Callable[[], Backend], log: logging.Logger
    ) -> None:
        self.label = label
        self.partial = partial
        self._backend = backend
        self.log = log
        self.cache, self.skipped = journal.load_all(partial.path.parent, partial.identity, log.info)
        self.requests = self.resumed = 0
        self.prompt_tokens = self.completion_tokens = 0
        self.generated = self.generated_tokens = 0
        self.generation_seconds = 0.0
        self.backend_used = False

    def complete(self, requests: list[Request], sampling: Sampling, step: str) -> list[Completion]:
        digests = {r.key: r.digest(sampling) for r in requests}
        if len(digests) != len(requests):
            raise ValueError(f"{self.label} {step}: duplicate request keys")
        done: dict[str, Completion] = {}
        for r in requests:
            entry = self.cache.get(r.key)
            if entry and entry["digest"] == digests[r.key]:
                done[r.key] = journal.completion(entry)
        self.resumed += len(done)
        pending = [r for r in requests if r.key not in done]
        if done:
            self.log.info("%s %s: %d of %d completions resumed", self.label, step, len(done), len(requests))
        with tqdm(
            total=len(requests), initial=len(done), desc=f"{self.label} {step}", unit="item", dynamic_ncols=True
        ) as bar:

            def finished(c: Completion) -> None:
                if c.key in done or c.key not in digests:
                    return
                self.partial.append([journal.entry(c, digests[c.key])])
                done[c.key] = c
                self.generated += 1
                self.generated_tokens += c.completion_tokens
                bar.update(1)
                faults.point("generation.completion")

            if pending:
                backend = self._backend()
                self.backend_used = True
                for start in range(0, len(pending), backend.batch_size):
                    chunk = pending[start : start + backend.batch_size]
                    began = time.perf_counter()
                    out = backend.generate(chunk, sampling, desc=step, progress=False, on_done=finished)
                    self.generation_seconds += time.perf_counter() - began
                    for c in out:  # a backend that did not report some completion as it finished
                        finished(c)
                    bar.set_postfix(tok_s=f"{self.generated_tokens / max(self.generation_seconds, 1e-9):.1f}")
        result = [done[r.key] for r in requests]
        self.requests += len(result)
        self.prompt_tokens += sum(c.prompt_tokens for c in result)
        self.completion_tokens += sum(c.completion_tokens for c in result)
        return result
