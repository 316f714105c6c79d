"""One training run described in plain values: what the train stage hands to the trainer, in this process or in
every process of an `accelerate launch` (written to a JSON file they read)."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# The `train.*` params keys a run reads, besides the seed (smt/pipeline/stages.py declares the same list).
HYPERPARAMETERS = (
    "mode",
    "loss",
    "epochs",
    "max_steps",
    "effective_batch_size",
    "per_device_batch_size",
    "max_length",
    "learning_rate",
    "warmup_ratio",
    "lr_scheduler",
    "weight_decay",
    "adam_beta1",
    "adam_beta2",
    "packing",
    "lora_r",
    "lora_alpha",
    "precision",
    "gradient_checkpointing",
    "save_steps",
)


@dataclass
class TrainSpec:
    base_model: str  # a Hugging Face folder (the student)
    data: str  # the training mix (JSON lines: text, and prompt for answer-only loss)
    mix_report: str  # the mix's report (generation behind it, for the compute accounting)
    model_out: str
    loss_out: str
    metrics_out: str
    checkpoints: str  # resumable checkpoints, outside the output folder
    name: str  # appended to the base model's id: "<base id>+smt-<name>"
    seed: int
    hyper: dict[str, Any]  # the values of HYPERPARAMETERS
    fingerprint: str  # of the params, for the checkpoints' identity
    code: dict[str, str] = field(default_factory=dict)  # content hashes of the stage's code, likewise
    provenance: dict[str, Any] = field(default_factory=dict)

    def __getitem__(self, key: str) -> Any:
        return self.hyper[key]

    def save(self, path: Path) -> None:
        path.write_text(json.dumps(dataclasses.asdict(self), indent=1))

    @classmethod
    def load(cls, path: str | Path) -> TrainSpec:
        return cls(**json.loads(Path(path).read_text()))
