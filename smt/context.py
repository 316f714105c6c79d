"""What a stage function receives: its params, resolved paths and a logger."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from smt import params as P
from smt import provenance
from smt import registry as R


@dataclass
class StageContext:
    stage: R.Stage
    axes: dict[str, str]
    params: dict[str, Any]
    inputs: dict[str, list[str]]
    outputs: dict[str, str]
    log: logging.Logger
    shard: int | None = None  # a sharded stage run for one shard only (Snakemake's `<stage>_shard` rule)

    @property
    def benchmark(self) -> str:
        return self.axes["benchmark"]

    @property
    def budget(self) -> int:
        return int(self.axes["budget"])

    def p(self, key: str) -> Any:
        """A params value; only keys the stage declares may be read, so the registry stays truthful."""
        if not any(key == k or key.startswith(k + ".") for k in self.keys):
            raise KeyError(f"stage '{self.stage.name}' reads '{key}' but does not declare it in the registry")
        return P.get(self.params, key)

    @property
    def keys(self) -> tuple[str, ...]:
        return self.stage.keys(self.axes)

    def input(self, name: str) -> str:
        (path,) = self.inputs[name]
        return path

    @property
    def fingerprint(self) -> str:
        return P.fingerprint(self.params, self.keys)

    def provenance(self) -> dict[str, Any]:
        return provenance.record(self.stage.name, self.axes, P.subset(self.params, self.keys), self.fingerprint)
