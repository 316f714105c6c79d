"""Code dependencies are computed from the import closure, and a runtime guard checks them.

The independent truths here are Python's own: what `sys.modules` holds after a stage module is imported in a
fresh interpreter, and the files a real stage opens (the guard's audit hook). The decision on shared modules
(core: declared by every stage; orchestration: by none) is tested both ways.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from smt.pipeline import codedeps, guard
from smt.pipeline import graph as G
from smt.pipeline import params as P
from smt.pipeline import stage as ST
from smt.pipeline import stages as S

ROOT = Path(__file__).resolve().parents[2]
PARAMS = P.load(ROOT / "params.yaml")
# Modules that no stage runs: the download command, the serving command and the package's own entry point.
TOOLS = {"smt/benchmarks/sources.py", "smt/synth/serve.py", "smt/train/worker.py"}


def declared(stage: ST.Stage) -> set[str]:
    return {p for axes in G.instances(stage, PARAMS) for p in G.stage_code(stage, axes)}


def _implementations() -> dict[str, list[ST.Stage]]:
    found: dict[str, list[ST.Stage]] = {}
    for st in S.STAGES:
        found.setdefault(st.module_name, []).append(st)
    return found


@pytest.mark.parametrize(("module", "stages"), _implementations().items(), ids=list(_implementations()))
def test_what_a_fresh_interpreter_loads_for_a_stage_is_declared(module: str, stages: list[ST.Stage]) -> None:
    """Import the stage module alone and list the smt modules Python loaded: each must be declared (or be
    orchestration). This sees the imports at module level; the lazy ones are the walk's job (next test)."""
    code = (
        "import json, sys, importlib; importlib.import_module(sys.argv[1]); "
        "print(json.dumps(sorted(m.__file__ for n, m in sys.modules.items() "
        "if (n == 'smt' or n.startswith('smt.')) and getattr(m, '__file__', None))))"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code, module],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    loaded = {Path(p).resolve().relative_to(ROOT).as_posix() for p in json.loads(proc.stdout)}
    for stage in stages:
        missing = loaded - declared(stage) - codedeps.ORCHESTRATION
        assert not missing, f"{stage.name} loads {sorted(missing)} but does not declare it"


def test_the_walk_follows_lazy_imports_and_prompts_named_by_constants() -> None:
    qa = set(G.stage_code(S.stage("synth_qa"), {"benchmark": "demo"}))
    # backends are imported inside make_backend; the QA prompt is named by a module-level constant
    assert {"smt/synth/backends/vllm.py", "smt/synth/backends/http.py", "smt/prompts/synth_qa.txt"} <= qa
    scoring = set(G.stage_code(S.stage("eval_closed_book_base"), {"benchmark": "demo"}))
    assert {"smt/prompts/mc_cot.txt", "smt/prompts/judge.txt", "smt/eval/answering.py"} <= scoring


def test_a_generators_own_module_and_prompts_belong_to_its_instance_only() -> None:
    st = S.stage("synth_docs")
    wrap = set(G.stage_code(st, {"benchmark": "demo", "generator": "wrap"}))
    focal = set(G.stage_code(st, {"benchmark": "demo", "generator": "focal_rewrite"}))
    assert "smt/synth/generators/wrap.py" in wrap and "smt/prompts/wrap.txt" in wrap
    assert "smt/synth/generators/wrap.py" not in focal and "smt/prompts/wrap.txt" not in focal
    assert "smt/prompts/active_reading_strategies.txt" in wrap & focal  # shared by the strategy-based ones


def test_train_declares_its_launch_configs() -> None:
    code = set(G.stage_code(S.stage("train"), {"benchmark": "demo", "budget": "4000"}))
    assert {"envs/accelerate/fsdp.yaml", "envs/accelerate/deepspeed_zero3.json"} <= code


def test_every_source_file_is_declared_by_a_stage_or_is_orchestration() -> None:
    used = set().union(*(declared(st) for st in S.STAGES)) | codedeps.ORCHESTRATION | TOOLS
    loaders = {f"smt/benchmarks/loaders/{b}.py" for b in G.axis_universe("benchmark")}
    generators = {f"smt/{kind}/{g}.{ext}" for g in G.axis_universe("generator") for kind, ext in
                  (("synth/generators", "py"), ("prompts", "txt"))}  # fmt: skip
    orphans = set(codedeps.all_sources()) - used - loaders - generators
    assert orphans == set(), f"files no stage declares and that are not orchestration: {sorted(orphans)}"


def test_core_modules_are_declared_by_every_stage_and_orchestration_by_none() -> None:
    for st in S.STAGES:
        code = declared(st)
        assert set(codedeps.CORE) <= code, st.name
        assert not code & codedeps.ORCHESTRATION, st.name
    everything = {ST.instance_id(st, ax) for st in S.STAGES for ax in G.instances(st, PARAMS)}
    for core in codedeps.CORE:
        assert G.readers_of_file(PARAMS, core) == everything, core
    for module in codedeps.ORCHESTRATION:
        assert G.readers_of_file(PARAMS, module) == set(), module


def test_the_guard_names_an_undeclared_module_and_an_undeclared_file(tmp_path: Path) -> None:
    sys.modules.pop("smt.eval.stats", None)
    (tmp_path / "results").mkdir()
    secret = tmp_path / "results" / "other_stage_output.json"
    secret.write_text("{}")
    declared_code = ["smt/__init__.py", "smt/io.py"]
    with guard.Audit() as used:
        import smt.eval.stats  # noqa: F401  (loaded by the stage, and not among the declared code)

        secret.read_text()
    with pytest.raises(guard.UndeclaredDependency) as err:
        guard.check("demo", declared_code, [], [str(tmp_path / "results/out.json")], used, root=tmp_path)
    assert "module smt/eval/stats.py" in str(err.value)
    assert "file results/other_stage_output.json" in str(err.value)


def test_the_guard_accepts_declared_inputs_outputs_and_scratch(tmp_path: Path) -> None:
    (tmp_path / "results/index").mkdir(parents=True)
    files = ["results/index/chunks.jsonl", "results/out.json", "results/.out.json.x.tmp", "results/.params/a.json"]
    for f in files:
        (tmp_path / f).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / f).write_text("x")
    with guard.Audit() as used:
        for f in files:
            (tmp_path / f).read_text()
    guard.check("demo", [], ["results/index"], ["results/out.json"], used, root=tmp_path)


def test_affected_names_every_instance_for_a_core_module_and_none_for_orchestration() -> None:
    def affected(*args: str) -> set[str]:
        out = subprocess.run(
            [sys.executable, "-m", "smt", "affected", *args], cwd=ROOT, capture_output=True, text=True, check=True
        ).stdout
        return set(out.split())

    everything = {ST.instance_id(st, ax) for st in S.STAGES for ax in G.instances(st, PARAMS)}
    assert affected("smt/io.py") == everything
    assert affected("smt/pipeline/stages.py") == set()
    assert affected("smt/prompts/focal_rewrite.txt") == G.downstream(PARAMS, {"synth_docs@demo-focal_rewrite"})
