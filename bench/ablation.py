"""What the embedded generator's data teaches the student: the student trained on each stream alone (QA only, Active
Reading only, Focal Rewriting only), on the paper's two mixes, and on the raw documents as a reference point, at one
token budget, each scored closed-book on the demo questions beside the untrained base model.

Every row runs the project's own stages (`python -m smt mix | train | eval_smt_closed_book`) in a scratch copy of
the project, over the synthetic streams and tables of a finished run (`make run` first, or --source a run's
folder), so each row is what the pipeline trains and scores for that recipe. A stream alone holds about half the
tokens a recipe at the same budget draws from it, so repeats are allowed here (`mix.max_repeat_fraction: 1`; the
report keeps the repeated share per row). The raw-documents row is mixed by the same code (smt.train.mixing.mix)
from the documents' paragraphs in place of synthetic streams, with the same replay share.

    python bench/ablation.py [--source .] [--budget 4000] [--epochs 2]
"""

from __future__ import annotations

import argparse
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
import yaml
from project_copy import copy_project

from smt.pipeline import stages as S

ROOT = Path(__file__).resolve().parents[1]
BENCHMARK = "demo"
RECIPES: dict[str, dict[str, float]] = {
    "qa_only": {"qa": 1.0},
    "active_reading_only": {"active_reading": 1.0},
    "focal_rewrite_only": {"focal_rewrite": 1.0},
    "smt": {"qa": 0.5, "active_reading": 0.5},
    "smt_fr": {"qa": 0.5, "focal_rewrite": 0.5},
    "raw_documents": {"qa": 1.0},  # a params entry for the stages; its mix is the documents' paragraphs (below)
}


def workspace(source: Path, dest: Path, budget: int, epochs: int) -> Path:
    """The project's files in `dest`, the finished run's tables, synthetic streams and models linked in, and params
    with the bench's recipes, budget and epochs."""
    copy_project(dest)
    for rel in ("results/models/base", f"results/data/{BENCHMARK}", f"results/synth/{BENCHMARK}"):
        if not (source / rel).exists():
            raise SystemExit(f"{source / rel} is missing: run `make run` (or pass --source a finished run's folder)")
        (dest / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copytree(source / rel, dest / rel, symlinks=True)
    params = yaml.safe_load((dest / "params.yaml").read_text())
    params["recipes"] = RECIPES
    params["mix"].update(token_budgets=[budget], max_repeat_fraction=1.0)
    params["train"]["epochs"] = epochs
    (dest / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    return dest


def stage(ws: Path, name: str, axes: dict[str, str]) -> float:
    """Run one stage in the workspace; its seconds."""
    started = time.perf_counter()
    command = [sys.executable, "-m", "smt", name, *(f"--{k}={v}" for k, v in axes.items())]
    env = {**os.environ, "PYTHONPATH": str(ws)}
    done = subprocess.run(command, cwd=ws, env=env, capture_output=True, text=True, check=False)
    if done.returncode:
        raise RuntimeError(f"{' '.join(command)} failed:\n{done.stderr[-4000:]}")
    return time.perf_counter() - started


def raw_mix(ws: Path, axes: dict[str, str], budget: int) -> None:
    """The raw-documents mix: the documents' paragraphs as the only stream, mixed with the replay share exactly as
    the mix stage mixes synthetic streams."""
    import polars as pl
    from transformers import AutoTokenizer

    from smt.train.mixing import REPLAY, count_tokens, mix, replay_passages

    params = yaml.safe_load((ws / "params.yaml").read_text())
    documents = pl.read_parquet(ws / S.DOCUMENTS.format(benchmark=BENCHMARK)).to_dicts()
    paragraphs = [
        {"id": f"{d['doc_id']}/p{i}", "doc_id": d["doc_id"], "text": p.strip(), "generator": "documents"}
        for d in documents
        for i, p in enumerate(d["text"].split("\n\n"))
        if p.strip()
    ]
    streams = {"qa": paragraphs, REPLAY: replay_passages(str(ws / params["mix"]["replay_corpus"]))}
    tokenizer = AutoTokenizer.from_pretrained(ws / S.BASE_MODEL.format(model=params["roles"]["student"]))
    count_tokens(streams, tokenizer)
    mixed, report = mix(streams, budget, {"qa": 1.0}, params["mix"]["replay_fraction"], params["seed"], 1.0)
    report["recipe"] = "raw_documents"
    out = ws / S.MIX.format(**axes)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("".join(json.dumps(m) + "\n" for m in mixed))
    (ws / S.MIX_REPORT.format(**axes)).write_text(json.dumps(report))


def measure(ws: Path, recipe: str, budget: int) -> dict[str, Any]:
    axes = {"benchmark": BENCHMARK, "recipe": recipe, "budget": str(budget)}
    seconds = {}
    if recipe == "raw_documents":
        raw_mix(ws, axes, budget)
    else:
        seconds["mix"] = stage(ws, "mix", axes)
    seconds["train"] = stage(ws, "train", axes)
    seconds["eval"] = stage(ws, "eval_smt_closed_book", axes)
    report = json.loads((ws / S.MIX_REPORT.format(**axes)).read_text())
    metrics = json.loads((ws / S.TRAIN_METRICS.format(**axes)).read_text())
    score = json.loads((ws / S.SMT_SCORE.format(**axes, condition="smt_closed_book")).read_text())
    return {
        "recipe": recipe,
        "shares": RECIPES[recipe] if recipe != "raw_documents" else {"documents": 1.0},
        "mix_tokens": report.get("total_tokens"),
        "tokens_by_stream": report.get("tokens"),
        "repeated_tokens": report.get("repeated_tokens"),
        "train_steps": metrics.get("steps"),
        "last_loss": metrics.get("last_loss"),
        "accuracy": score["accuracy"],
        "ci_low": score["ci_low"],
        "ci_high": score["ci_high"],
        "n": score["n"],
        "seconds": {k: round(v, 1) for k, v in seconds.items()},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--source", type=Path, default=ROOT, help="a finished run's project folder")
    parser.add_argument("--budget", type=int, default=4000, help="synthetic tokens in every mix")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--recipes", nargs="*", default=list(RECIPES))
    parser.add_argument("--out", type=Path, default=ROOT / "bench/results/ablation.json")
    args = parser.parse_args()
    base = json.loads((args.source / S.SCORE.format(benchmark=BENCHMARK, condition="closed_book_base")).read_text())
    rows = [{"recipe": "base (untrained)", **{k: base[k] for k in ("accuracy", "ci_low", "ci_high", "n")}}]
    with tempfile.TemporaryDirectory(prefix="smt-ablation-") as scratch:
        ws = workspace(args.source.resolve(), Path(scratch), args.budget, args.epochs)
        for recipe in args.recipes:
            rows.append(measure(ws, recipe, args.budget))
            r = rows[-1]
            print(
                f"{recipe:22s} {r['accuracy']:.3f} [{r['ci_low']:.3f}, {r['ci_high']:.3f}]  {r['seconds']}", flush=True
            )
    print("\n| trained on | closed-book accuracy [95% CI] |\n|---|---|")
    for r in rows:
        print(f"| {r['recipe']} | {100 * r['accuracy']:.1f}% [{100 * r['ci_low']:.1f}, {100 * r['ci_high']:.1f}] |")
    results_file.write(
        str(args.out), {"benchmark": BENCHMARK, "budget": args.budget, "epochs": args.epochs, "rows": rows}
    )


if __name__ == "__main__":
    main()
