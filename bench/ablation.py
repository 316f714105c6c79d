"""What the embedded generator's data teaches the student: the student trained on each stream alone (QA only, Active
Reading only, Focal Rewriting only), on the paper's two mixes, and on the raw documents as a reference point, at one
token budget, each scored closed-book on the demo questions beside the untrained base model.

Every row runs the project's own stages (`python -m smt mix | train | eval_smt_closed_book`) in a scratch copy of
the project, over the synthetic streams and tables of a finished run (`make run` first, or --source a run's
folder), so each row is what the pipeline trains and scores for that recipe. A stream alone holds about half the
tokens a recipe at the same budget draws from it, so repeats are allowed here (`mix.max_repeat_fraction: 1`; the
report keeps the repeated share per row). The raw-documents row is mixed by the same code (smt.train.mixing.mix)
from the documents' paragraphs in place of synthetic streams, with the same replay share.

Beside each row, how many of the questions' answers its training mix states at all: the correct option's words
(less a leading article) found in the mix's items about the question's document, counting only questions whose
answer appears so in the document itself. A student cannot learn from its mix a fact the mix never states.

Both of the project's multiple-choice scorers are reported: `letter` (the default) and the cloze scorer
`option_loglik`, which asks nothing of the student's instruction following.

    python bench/ablation.py [--source .] [--budget 4000] [--epochs 2 [8 ...]] [--learning-rate 5e-4]
                             [--recipes smt raw_documents ...]
"""

from __future__ import annotations

import argparse
import json
import os
import re
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
CLOZE = "option_loglik"  # the cloze scorer: each option's log-likelihood after the question
RECIPES: dict[str, dict[str, float]] = {
    "qa_only": {"qa": 1.0},
    "active_reading_only": {"active_reading": 1.0},
    "focal_rewrite_only": {"focal_rewrite": 1.0},
    "smt": {"qa": 0.5, "active_reading": 0.5},
    "smt_fr": {"qa": 0.5, "focal_rewrite": 0.5},
    "raw_documents": {"qa": 1.0},  # a params entry for the stages; its mix is the documents' paragraphs (below)
}


def workspace(source: Path, dest: Path, budget: int) -> Path:
    """The project's files in `dest`, the finished run's tables, synthetic streams and models linked in, and params
    with the bench's recipes and budget, and the cloze scorer beside the letter scorer."""
    copy_project(dest)
    for rel in ("results/models/base", f"results/data/{BENCHMARK}", f"results/synth/{BENCHMARK}"):
        if not (source / rel).exists():
            raise SystemExit(f"{source / rel} is missing: run `make run` (or pass --source a finished run's folder)")
        (dest / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copytree(source / rel, dest / rel, symlinks=True)
    params = yaml.safe_load((dest / "params.yaml").read_text())
    params["recipes"] = RECIPES
    params["mix"].update(token_budgets=[budget], max_repeat_fraction=1.0)
    params["eval"]["extra_scorers"] = [CLOZE]
    (dest / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    return dest


def set_training(ws: Path, epochs: int, learning_rate: float | None) -> None:
    """`train.epochs` and, where given, `train.learning_rate` in the workspace's params."""
    params = yaml.safe_load((ws / "params.yaml").read_text())
    params["train"]["epochs"] = epochs
    if learning_rate is not None:
        params["train"]["learning_rate"] = learning_rate
    (ws / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))


def accuracies(score: dict[str, Any]) -> dict[str, Any]:
    """Both scorers' accuracy and 95% interval, in points."""
    found: dict[str, Any] = {"n": score["n"]}
    for name in ("letter", CLOZE):
        s = score["scorers"][name]
        found[name] = [round(100 * s[k], 1) for k in ("accuracy", "ci_low", "ci_high")]
    return found


def stage(ws: Path, name: str, axes: dict[str, str]) -> float:
    """Run one stage in the workspace on the threads its Snakemake rule holds (bfloat16 scores round by thread
    count, so the base row matches the pipeline's); its seconds."""
    started = time.perf_counter()
    command = [sys.executable, "-m", "smt", name, *(f"--{k}={v}" for k, v in axes.items())]
    env = {**os.environ, "PYTHONPATH": str(ws), "OMP_NUM_THREADS": str(S.stage(name).threads)}
    done = subprocess.run(command, cwd=ws, env=env, capture_output=True, text=True, check=False)
    if done.returncode:
        raise RuntimeError(f"{' '.join(command)} failed:\n{done.stderr[-4000:]}")
    return time.perf_counter() - started


def normalized(text: str) -> str:
    """Lowercase words separated by single spaces, for matching an answer inside a text."""
    return " ".join(re.findall(r"[a-z0-9]+", text.lower()))


def answer_words(question: dict[str, Any]) -> str:
    """The correct option's words, less a leading article or hedge ("The Halcyon Reed" -> "halcyon reed")."""
    words = normalized(question["options"]["ABCD".index(question["answer"])])
    return re.sub(r"^(the|a|an|roughly|about) ", "", words)


def answers_in_mix(ws: Path, axes: dict[str, str]) -> dict[str, int]:
    """How many answers the mix states: questions whose answer's words occur in the mix's items about their
    document, of those whose answer's words occur in the document."""
    import polars as pl

    documents = pl.read_parquet(ws / S.DOCUMENTS.format(benchmark=BENCHMARK)).to_dicts()
    questions = pl.read_parquet(ws / S.QUESTIONS.format(benchmark=BENCHMARK)).to_dicts()
    source = {d["doc_id"]: normalized(d["text"]) for d in documents}
    mixed: dict[str, str] = {}
    for line in (ws / S.MIX.format(**axes)).open():
        item = json.loads(line)
        mixed[item.get("doc_id") or ""] = mixed.get(item.get("doc_id") or "", "") + " " + normalized(item["text"])
    stated = [q for q in questions if answer_words(q) in source.get(q["doc_id"], "")]
    return {
        "answers_in_documents": len(stated),
        "answers_in_mix": sum(answer_words(q) in mixed.get(q["doc_id"], "") for q in stated),
    }


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


def measure(ws: Path, recipe: str, budget: int, epochs: int, learning_rate: float | None) -> dict[str, Any]:
    axes = {"benchmark": BENCHMARK, "recipe": recipe, "budget": str(budget)}
    set_training(ws, epochs, learning_rate)
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
        "epochs": epochs,
        "learning_rate": yaml.safe_load((ws / "params.yaml").read_text())["train"]["learning_rate"],
        "shares": RECIPES[recipe] if recipe != "raw_documents" else {"documents": 1.0},
        "mix_tokens": report.get("total_tokens"),
        "tokens_by_stream": report.get("tokens"),
        "repeated_tokens": report.get("repeated_tokens"),
        **answers_in_mix(ws, axes),
        "train_steps": metrics.get("steps"),
        "last_loss": metrics.get("last_loss"),
        **accuracies(score),
        "seconds": {k: round(v, 1) for k, v in seconds.items()},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--source", type=Path, default=ROOT, help="a finished run's project folder")
    parser.add_argument("--budget", type=int, default=4000, help="synthetic tokens in every mix")
    parser.add_argument("--epochs", type=int, nargs="+", default=[2], help="each recipe is trained at each")
    parser.add_argument("--learning-rate", type=float, help="train.learning_rate (default: params.yaml's)")
    parser.add_argument("--recipes", nargs="*", default=list(RECIPES))
    parser.add_argument("--out", type=Path, default=ROOT / "bench/results/ablation.json")
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory(prefix="smt-ablation-") as scratch:
        ws = workspace(args.source.resolve(), Path(scratch), args.budget)
        stage(ws, "eval_closed_book_base", {"benchmark": BENCHMARK})
        base = json.loads((ws / S.SCORE.format(benchmark=BENCHMARK, condition="closed_book_base")).read_text())
        rows.append({"recipe": "base (untrained)", "epochs": 0, **accuracies(base)})
        for epochs in args.epochs:
            for recipe in args.recipes:
                rows.append(measure(ws, recipe, args.budget, epochs, args.learning_rate))
                print(json.dumps(rows[-1]), flush=True)
    print("\n| trained on | epochs | lr | answers in mix | letter [95% CI] | cloze [95% CI] | last loss |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        letter, cloze = ("{:.1f}% [{:.1f}, {:.1f}]".format(*r[k]) for k in ("letter", CLOZE))
        lr, loss = r.get("learning_rate", ""), r.get("last_loss", "")
        stated = f"{r['answers_in_mix']} of {r['answers_in_documents']}" if "answers_in_mix" in r else ""
        print(f"| {r['recipe']} | {r['epochs']} | {lr} | {stated} | {letter} | {cloze} | {loss} |")
    result = {"benchmark": BENCHMARK, "budget": args.budget, "rows": rows}
    results_file.write(str(args.out), result)


if __name__ == "__main__":
    main()
