"""Model roles: the generator writes the synthetic data and the student is trained, two different models, and
every manifest says which one did what. A model named by several roles is materialized once."""

from __future__ import annotations

import contextlib
import json
from pathlib import Path

import pytest
from helpers import make_workspace, tiny_llama

from smt.pipeline import graph as G
from smt.pipeline import params as P
from smt.pipeline import stage as ST
from smt.pipeline import stages as S
from smt.pipeline.runner import run_stage
from smt.train.compute import parameter_count

STUDENT_ID = "smt-tests/tiny-random-llama"


def test_a_model_named_by_every_role_is_materialized_once() -> None:
    params = P.load(Path(__file__).resolve().parents[2] / "params.yaml")
    assert len(set(params["roles"].values())) == 1
    assert [ST.instance_id(S.stage("model"), a) for a in G.instances(S.stage("model"), params)] == ["model@smollm2"]


def test_the_generator_and_the_student_are_different_models(tmp_path: Path, base_model: Path) -> None:
    student = tiny_llama(tmp_path / "tiny", base_model)
    changes = {
        "models": {
            "tiny": {
                "source": "local",
                "id": STUDENT_ID,
                "package": None,
                "gguf_file": None,
                "path": str(student),
                "dtype": "float32",
                "chat_template_kwargs": {},
            }
        },
        "roles": {"generator": "smollm2", "student": "tiny", "judge": "tiny"},
        "recipes": {"qa_only": {"qa": 1.0}},
        "ingest": {"max_documents": 2},
        "generation": {"max_rounds": 1},
        "synth_qa": {"per_request": 1, "per_document": 4, "max_new_tokens": 64},  # as tests/synth/test_engine.py
        "mix": {"token_budgets": [40], "max_repeat_fraction": 1.0, "replay_fraction": 0.0},
        "train": {"max_steps": 1, "max_length": 64, "effective_batch_size": 1, "per_device_batch_size": 1},
    }
    ws = make_workspace(tmp_path / "ws", changes)
    (ws / "results/models/base").mkdir(parents=True)
    (ws / "results/models/base/smollm2").symlink_to(base_model)  # the generator, built once for the session
    with contextlib.chdir(ws):
        run_stage("model", {"model": "tiny"})
        for stage, axes in [
            ("ingest", {"benchmark": "demo"}),
            ("synth_qa", {"benchmark": "demo"}),
            ("mix", {"benchmark": "demo", "recipe": "qa_only", "budget": "40"}),
            ("train", {"benchmark": "demo", "recipe": "qa_only", "budget": "40"}),
        ]:
            run_stage(stage, axes)
    read = lambda rel: json.loads((ws / rel).read_text())  # noqa: E731
    assert read("results/models/base/tiny/smt_manifest.json")["model_id"] == STUDENT_ID
    generated = read("results/synth/demo/qa.manifest.json")
    assert generated["model"]["id"] == "HuggingFaceTB/SmolLM2-135M-Instruct"
    assert generated["model"]["path"] == "results/models/base/smollm2"
    assert read("results/mix/demo/qa_only/40/mix_report.json")["generation"]["models"][0]["path"] == (
        "results/models/base/smollm2"
    )
    metrics = read("results/train/demo/qa_only/40/train_metrics.json")
    assert metrics["parameters"] == parameter_count(student) != parameter_count(base_model)
    assert metrics["generator_parameters"] is None and "not the base model folder" in metrics["generation_note"]
    trained = read("results/models/smt/demo/qa_only/40/smt_manifest.json")
    assert trained["base_model"] == STUDENT_ID and trained["model_id"] == f"{STUDENT_ID}+smt-demo-qa_only-40"
    assert trained["provenance"]["params"]["roles.student"] == "tiny"
    assert generated["provenance"]["params"]["roles.generator"] == "smollm2"


def test_roles_must_name_models() -> None:
    params = P.load(Path(__file__).resolve().parents[2] / "params.yaml")
    params["roles"]["generator"] = "llama70b"
    with pytest.raises(P.ParamsError, match=r"'roles.generator' = 'llama70b' is not a model under 'models'"):
        P.validate(params)
