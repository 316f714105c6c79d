"""What a stage adapter receives: its params (only the keys it declares), resolved paths, its code dependencies
and a logger."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from smt.pipeline import params as P
from smt.pipeline import provenance
from smt.pipeline import stage as ST


@dataclass
class StageContext:
    stage: ST.Stage
    axes: dict[str, str]
    params: dict[str, Any]
    inputs: dict[str, list[str]]
    outputs: dict[str, str]
    log: logging.Logger
    shard: int | None = None  # a sharded stage run for one shard only (Snakemake's `<stage>_shard` rule)
    code: tuple[str, ...] = ()  # the instance's code dependencies (resumable work is keyed to their content)

    @property
    def label(self) -> str:
        """The instance, as DVC names it (`mix@demo-smt-4000`)."""
        return ST.instance_id(self.stage, self.axes)

    def shard_outputs(self, index: int) -> dict[str, str]:
        return ST.shard_outputs(self.stage, self.axes, index)

    @property
    def benchmark(self) -> str:
        return self.axes["benchmark"]

    @property
    def budget(self) -> int:
        return int(self.axes["budget"])

    def p(self, key: str) -> Any:
        """A params value; only keys the stage declares may be read, so the registry stays truthful. A key may
        name its model through a role, as the stage declares it (`models.${roles.student}.chat_template_kwargs`)."""
        key = ST.resolve_key(key, self.params)
        if not any(key == k or key.startswith(k + ".") for k in self.keys):
            raise KeyError(f"stage '{self.stage.name}' reads '{key}' but does not declare it (smt/pipeline/stages.py)")
        return P.get(self.params, key)

    @property
    def keys(self) -> tuple[str, ...]:
        return self.stage.keys(self.axes, self.params)

    def input(self, name: str) -> str:
        (path,) = self.inputs[name]
        return path

    @property
    def fingerprint(self) -> str:
        return P.fingerprint(self.params, self.keys)

    def provenance(self) -> dict[str, Any]:
        return provenance.record(self.stage.name, self.axes, P.subset(self.params, self.keys), self.fingerprint)
