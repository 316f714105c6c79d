"""GPU smoke check: the paths only an accelerator exercises, in a few minutes on one GPU, without network.

Checks (each passes, fails or is skipped with its reason; one JSON file holds them all, with the machine):

- transformers_batch: the transformers backend (bfloat16 on a GPU) completes 16 requests as one batch and one by
  one; how many records are identical (on a CPU in float32 all must be; bf16 GPU kernels are not batch-invariant,
  so the count is measured, not required), and peak GPU memory.
- serve: `python -m smt serve` answers a chat completion.
- train_resume: the train stage (bf16 on a GPU) for 4 steps with a checkpoint after each, SIGKILL after the first
  complete checkpoint, the same command again: it resumes and finishes.
- fsdp: the same through `accelerate launch` with envs/accelerate/fsdp.yaml (sharded checkpoints, the final
  model gathered whole), over every GPU of the machine.
- scorers: the letter, option_loglik and generate scorers on demo questions, on the GPU.
- scorers_gpu_vs_cpu (GPU only): the three scorers on the first 40 demo questions with the embedded model, on the CPU in
  float32 (a process that sees no GPU) and on the GPU in float32 and in bfloat16 (`eval.dtype: auto`); the
  predictions compared. In float32 the GPU must agree with the CPU on every question but near-ties (the CPU's
  two best scores within 1e-3); bfloat16's agreement is measured and reported with the CPU margins of the
  questions where it differs, not required (bf16 rounding can flip a close call).
- mfu: bench/training.py's steady-state MFU of a 1B-class Llama with random weights (bench/configs/llama-1b.json).
- vllm (where installed): one engine on one GPU, batch-invariant mode on, 16 requests together and one by one.
- faiss_gpu (where faiss has GPU support): a flat inner-product index on the GPU against the CPU's.

Models: the embedded SmolLM2-135M folder (results/models/base/smollm2; built with `python -m smt model` when
missing) and random weights from the configs in bench/configs/. With --cpu (the default without CUDA; what CI
runs) every check that a CPU can run runs on a tiny random Llama (bench/configs/llama-tiny.json) in float32.

    python bench/gpu_smoke.py [--cpu] [--base results/models/base/smollm2] [--only NAME ...] [--out FILE]
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import socket
import subprocess
import sys
import tempfile
import time
import traceback
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import results_file
import smoke_train
import torch

ROOT = Path(__file__).resolve().parents[1]
CHECKS: dict[str, Callable[[Context], dict[str, Any]]] = {}


class Skip(Exception):
    """This check cannot run here; the message says why."""


class Context:
    def __init__(self, gpu: bool, base: Path, scratch: Path) -> None:
        self.gpu, self.base, self.scratch = gpu, base, scratch
        self.dtype = "bfloat16" if gpu else "float32"
        self.model = base if gpu else tiny_model(base, scratch / "llama-tiny")  # generation, serving, scoring, training


def check(fn: Callable[[Context], dict[str, Any]]) -> Callable[[Context], dict[str, Any]]:
    CHECKS[fn.__name__] = fn
    return fn


def tiny_model(base: Path, out: Path) -> Path:
    """A random tiny Llama with the embedded model's tokenizer, saved as a Hugging Face folder."""
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(**json.loads((ROOT / "bench/configs/llama-tiny.json").read_text()))
    LlamaForCausalLM(config).to(torch.float32).save_pretrained(out)
    AutoTokenizer.from_pretrained(base).save_pretrained(out)
    return out


def requests(n: int) -> list[Any]:
    from smt.synth.generation import Request, item_seed

    topics = ["lighthouses", "tides", "lanterns", "harbours", "gulls", "storms", "ferries", "nets"]
    return [
        Request(f"r{i}", [{"role": "user", "content": f"Write one sentence about {topics[i % 8]} ({i})."}],
                item_seed(7, "smoke", i))
        for i in range(n)
    ]  # fmt: skip


@check
def transformers_batch(ctx: Context) -> dict[str, Any]:
    from smt.synth.backends.transformers import TransformersBackend
    from smt.synth.generation import Sampling

    sampling = Sampling(1.0, 0.95, 32) if ctx.gpu else Sampling(1.0, 0.95, 8)  # a short run on CPUs
    backend = TransformersBackend(str(ctx.model), dtype=ctx.dtype, batch_size=16)
    if ctx.gpu:
        torch.cuda.reset_peak_memory_stats()
    together = backend.generate(requests(16), sampling, progress=False)
    peak = torch.cuda.max_memory_allocated() if ctx.gpu else None
    alone = [backend.generate([r], sampling, progress=False)[0] for r in requests(16)]  # each beside idle lanes
    same = [a.text == b.text for a, b in zip(together, alone, strict=True)]
    claimed = backend.describe()["batch_invariant"]
    found = {"device": backend.device, "dtype": ctx.dtype, "identical": sum(same), "of": len(same),
             "peak_gpu_memory_bytes": peak, "batch_invariant_claimed": claimed}  # fmt: skip
    if not ctx.gpu and not all(same):
        raise AssertionError(f"float32 on a CPU must not depend on the batch: {found}")
    return found


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@check
def serve(ctx: Context) -> dict[str, Any]:
    port = free_port()
    command = [sys.executable, "-m", "smt", "serve", "--model", str(ctx.model), "--port", str(port)]
    command += ["--dtype", ctx.dtype]
    proc = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 300
        while True:
            try:
                with urllib.request.urlopen(f"{url}/health", timeout=5) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"smt serve did not come up: {proc.stderr.read()[-3000:] if proc.stderr else ''}")
            time.sleep(0.5)
        body = {"messages": [{"role": "user", "content": "Name a colour."}], "max_tokens": 16, "seed": 3}
        request = urllib.request.Request(
            f"{url}/v1/chat/completions", json.dumps(body).encode(), {"Content-Type": "application/json"}
        )
        with urllib.request.urlopen(request, timeout=120) as r:
            answer = json.loads(r.read())
    finally:
        proc.terminate()
        proc.wait(timeout=60)
    text = answer["choices"][0]["message"]["content"]
    if not isinstance(text, str) or not answer.get("usage", {}).get("completion_tokens"):
        raise AssertionError(f"unexpected answer: {answer}")
    return {"text": text, "usage": answer["usage"]}


@check
def train_resume(ctx: Context) -> dict[str, Any]:
    ws = smoke_train.workspace(ctx.scratch / "train", ctx.model, 128 if ctx.gpu else 64)
    found = smoke_train.killed_and_resumed(ws, {})
    from smt.train.sft import precision

    if found["precision"] != precision("auto"):  # bf16 on a GPU that has it or a CPU with AMX-BF16, else fp32
        raise AssertionError(f"precision {found['precision']}")
    return {**found, **smoke_train.loads(ws)}


@check
def fsdp(ctx: Context) -> dict[str, Any]:
    if not ctx.gpu:
        raise Skip("accelerate shards with FSDP on CUDA devices only (on a CPU the launch runs unsharded processes)")
    ws = smoke_train.workspace(ctx.scratch / "fsdp", ctx.model, 128)
    gpus = str(torch.cuda.device_count())
    env = {"SMT_ACCELERATE_CONFIG": "envs/accelerate/fsdp.yaml", "SMT_TRAIN_PROCESSES": gpus}
    found = smoke_train.killed_and_resumed(ws, env)
    sharded = any(name.startswith("pytorch_model_fsdp_") and "." not in name for name in found["checkpoint_files"])
    if not sharded:
        raise AssertionError(f"the checkpoint is not sharded: {found['checkpoint_files']}")
    return {**found, **smoke_train.loads(ws)}


def demo_questions(n: int) -> tuple[list[dict[str, Any]], list[str]]:
    from smt import benchmarks
    from smt.eval.framing import framed_question

    loaded = benchmarks.load("demo", {"source": str(ROOT / "smt/benchmarks/demo")})
    docs = {d["doc_id"]: d for d in loaded.documents}
    questions = [{"status": "ok", **q} for q in loaded.questions[:n]]
    return questions, [framed_question(q["question"], docs.get(q["doc_id"])) for q in questions]


def run_scorers(model_path: str, dtype: str, n: int, max_new_tokens: int) -> dict[str, Any]:
    """The three multiple-choice scorers as the evaluation stage runs them (closed-book, two worked examples for
    generate, greedy): per scorer, where it ran and each question's prediction and scores."""
    from smt.eval import answering
    from smt.eval import scorers as S

    questions, framed = demo_questions(n)
    passages: list[list] = [[] for _ in questions]
    model = S.Model(model_path, dtype=dtype, batch_size=8)
    shots = answering.load_shots(ROOT / "smt/prompts/mc_cot_shots.jsonl", 2)
    found = {}
    for name in S.SCORERS:
        if name == "generate":
            records, where = S.score_generated_choice(
                model, questions, framed, passages, S.Decoding(max_new_tokens), shots, "smoke"
            )
        else:
            records, where = getattr(S, f"score_{name}")(model, questions, framed, passages)
        found[name] = {
            "where": {k: where.get(k) for k in ("device", "dtype")},
            "predicted": [r["predicted"] for r in records],
            "scores": [r.get("scores") for r in records],
            "correct": sum(bool(r["correct"]) for r in records),
        }
    return found


@check
def scorers(ctx: Context) -> dict[str, Any]:
    found = run_scorers(str(ctx.model), ctx.dtype, 8, 32)
    device = found["letter"]["where"]["device"]
    if ctx.gpu and not all(f["where"]["device"].startswith("cuda") for f in found.values()):
        raise AssertionError(f"a scorer did not run on the GPU: {[f['where'] for f in found.values()]}")
    return {
        "device": device,
        "dtype": found["letter"]["where"]["dtype"],
        "questions": len(found["letter"]["predicted"]),
        **{f"{name}_correct": f["correct"] for name, f in found.items()},
        "generate_unparseable": sum(p is None for p in found["generate"]["predicted"]),
    }


SCORERS_SCRIPT = """
import json, sys
sys.path.insert(0, sys.argv[5])
from gpu_smoke import run_scorers

if __name__ == "__main__":
    print("RESULT " + json.dumps(run_scorers(sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]))))
"""


def scorers_in_process(model: Path, dtype: str, cpu: bool, scratch: Path, n: int = 40) -> dict[str, Any]:
    """run_scorers on n demo questions in a fresh process; with cpu=True it sees no GPU, as a CPU-only evaluation
    job."""
    import os

    script = scratch / "scorers_check.py"
    script.write_text(SCORERS_SCRIPT)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    if cpu:
        env["CUDA_VISIBLE_DEVICES"] = ""
    command = [sys.executable, str(script), str(model), dtype, str(n), "64", str(ROOT / "bench")]
    proc = subprocess.run(command, capture_output=True, text=True, timeout=1200, env=env, cwd=ROOT)
    found = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
    if proc.returncode or not found:
        raise RuntimeError(f"the scorers failed ({proc.returncode}):\n{proc.stderr[-4000:]}")
    return json.loads(found[-1][7:])


def margin(scores: list[float]) -> float:
    top = sorted(scores, reverse=True)
    return top[0] - top[1]


def compare(cpu: dict[str, Any], gpu: dict[str, Any]) -> dict[str, Any]:
    """Per scorer: how many predictions agree, the largest score difference, and the CPU's margin between its two
    best options on each question where they differ."""
    out = {}
    for name, ref in cpu.items():
        other = gpu[name]
        differ = [i for i, (a, b) in enumerate(zip(ref["predicted"], other["predicted"], strict=True)) if a != b]
        entry: dict[str, Any] = {"agree": len(ref["predicted"]) - len(differ), "of": len(ref["predicted"])}
        entry["correct_cpu"], entry["correct_gpu"] = ref["correct"], other["correct"]
        if ref["scores"][0] is not None:
            pairs = zip(ref["scores"], other["scores"], strict=True)
            entry["max_score_difference"] = max(abs(a - b) for s, t in pairs for a, b in zip(s, t, strict=True))
            entry["cpu_margins_where_they_differ"] = [round(margin(ref["scores"][i]), 6) for i in differ]
        out[name] = entry
    return out


@check
def scorers_gpu_vs_cpu(ctx: Context) -> dict[str, Any]:
    if not ctx.gpu:
        raise Skip("no CUDA device: the CPU-against-GPU comparison of the scorers runs on a GPU machine only")
    cpu = scorers_in_process(ctx.base, "auto", True, ctx.scratch)
    gpu32 = scorers_in_process(ctx.base, "float32", False, ctx.scratch)
    gpu16 = scorers_in_process(ctx.base, "auto", False, ctx.scratch)
    result = {
        "where": {"cpu": cpu["letter"]["where"], "gpu_float32": gpu32["letter"]["where"]},
        "float32": compare(cpu, gpu32),
        "auto": compare(cpu, gpu16),
    }
    result["where"]["gpu_auto"] = gpu16["letter"]["where"]
    if cpu["letter"]["where"]["device"] != "cpu" or not gpu32["letter"]["where"]["device"].startswith("cuda"):
        raise AssertionError(f"the scorers did not run where asked: {result['where']}")
    for name in ("letter", "option_loglik"):
        close_calls = [m for m in result["float32"][name].get("cpu_margins_where_they_differ", []) if m > 1e-3]
        if close_calls:
            raise AssertionError(f"{name}: the GPU in float32 disagrees with the CPU beyond near-ties: {result}")
    return result


@check
def mfu(ctx: Context) -> dict[str, Any]:
    import training
    from transformers import AutoTokenizer

    from smt import inference

    tokenizer = AutoTokenizer.from_pretrained(ctx.base)
    if ctx.gpu:
        bf16 = inference.fast_bf16(True)
        row = training.measure("Llama-1B (random)", training.one_billion(), tokenizer, True, 3, 10, 2048, 8, bf16)
    else:
        model = training.one_billion(ROOT / "bench/configs/llama-tiny.json")
        row = training.measure("Llama tiny (random)", model, tokenizer, True, 1, 2, 64, 2, False)
    if row["gradient_checkpointing"] or not row["tokens_per_s"] > 0:
        raise AssertionError(f"unexpected measurement: {row}")
    return {**training.header(), **row}


VLLM_SCRIPT = """
import json, sys
from smt.synth.backends.vllm import VLLMBackend
from smt.synth.generation import Request, Sampling, item_seed

if __name__ == "__main__":
    backend = VLLMBackend(sys.argv[1], dtype="bfloat16", batch_size=16, tensor_parallel_size=1,
                          gpu_memory_utilization=0.5, max_model_len=2048, batch_invariant=True)
    asks = [Request(f"r{i}", [{"role": "user", "content": f"Write one sentence about tides ({i})."}],
                    item_seed(7, "smoke", i)) for i in range(16)]
    sampling = Sampling(1.0, 0.95, 32)
    together = backend.generate(asks, sampling, progress=False)
    alone = [backend.generate([r], sampling, progress=False)[0] for r in asks]
    same = sum(a.text == b.text for a, b in zip(together, alone))
    print("RESULT " + json.dumps({"identical": same, "of": len(asks), **backend.describe()}))
"""


@check
def vllm(ctx: Context) -> dict[str, Any]:
    if importlib.util.find_spec("vllm") is None:
        raise Skip("vllm is not installed (envs/requirements-gpu.txt)")
    if not ctx.gpu:
        raise Skip("the smoke check runs vLLM on a GPU only")
    script = ctx.scratch / "vllm_check.py"
    script.write_text(VLLM_SCRIPT)
    proc = subprocess.run([sys.executable, str(script), str(ctx.base)], capture_output=True, text=True, timeout=900)
    found = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
    if proc.returncode or not found:
        raise RuntimeError(f"vLLM failed ({proc.returncode}):\n{proc.stderr[-4000:]}")
    result = json.loads(found[-1][7:])
    if result["identical"] != result["of"]:
        raise AssertionError(f"batch-invariant mode, yet completions depend on the batch: {result}")
    return result


@check
def faiss_gpu(ctx: Context) -> dict[str, Any]:
    import faiss
    import numpy as np

    if not hasattr(faiss, "StandardGpuResources") or faiss.get_num_gpus() == 0:
        raise Skip("this faiss build has no GPU support (faiss-cpu is the pinned one)")
    rng = np.random.default_rng(0)
    vectors = rng.standard_normal((10_000, 384)).astype("float32")
    queries = rng.standard_normal((100, 384)).astype("float32")
    cpu = faiss.IndexFlatIP(384)
    cpu.add(vectors)
    gpu = faiss.index_cpu_to_gpu(faiss.StandardGpuResources(), 0, faiss.IndexFlatIP(384))
    gpu.add(vectors)
    same = float((cpu.search(queries, 10)[1] == gpu.search(queries, 10)[1]).mean())
    if same < 0.99:
        raise AssertionError(f"GPU top-10 differs from the CPU's: {same:.3f} identical")
    return {"identical_top10": same}


def run(ctx: Context, names: list[str]) -> dict[str, Any]:
    results = {}
    for name in names:
        started = time.perf_counter()
        try:
            entry = {"status": "passed", **CHECKS[name](ctx)}
        except Skip as exc:
            entry = {"status": "skipped", "reason": str(exc)}
        except Exception as exc:
            entry = {"status": "failed", "error": f"{type(exc).__name__}: {exc}"}
            entry["trace"] = traceback.format_exc()[-3000:]
        entry["seconds"] = round(time.perf_counter() - started, 1)
        results[name] = entry
        print(f"{name:>20}: {entry['status']} ({entry['seconds']} s) {entry.get('reason') or entry.get('error') or ''}")
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--cpu", action="store_true", help="tiny models in float32 on the CPU (default without CUDA)")
    parser.add_argument("--base", default=str(ROOT / "results/models/base/smollm2"), help="the embedded model folder")
    parser.add_argument("--only", nargs="+", choices=sorted(CHECKS), help="run only these checks")
    parser.add_argument("--out", default=str(ROOT / "bench/results/gpu_smoke.json"))
    args = parser.parse_args()
    gpu = torch.cuda.is_available() and not args.cpu
    base = Path(args.base)
    if not (base / "config.json").is_file():
        print(f"{base} is missing: building it with `python -m smt model`", file=sys.stderr)
        subprocess.run([sys.executable, "-m", "smt", "model"], cwd=ROOT, check=True)
    with tempfile.TemporaryDirectory(prefix="smt-smoke-") as scratch:
        results = run(Context(gpu, base, Path(scratch)), args.only or list(CHECKS))
    versions = {}
    for package in ("torch", "transformers", "trl", "accelerate", "vllm", "faiss"):
        try:
            versions[package] = __import__(package).__version__
        except (ImportError, AttributeError):
            versions[package] = None
    results_file.write(args.out, {"mode": "gpu" if gpu else "cpu", "versions": versions, "checks": results})
    return 1 if any(r["status"] == "failed" for r in results.values()) else 0


if __name__ == "__main__":
    sys.exit(main())
