"""The package's layers: the domain never reaches up into the orchestration layer, and modules stay small."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "smt"
ABOVE_THE_DOMAIN = ("smt/pipeline/", "smt/stages/", "smt/cli.py", "smt/__main__.py")
MAX_LINES = 300


def modules() -> list[Path]:
    return sorted(p for p in PACKAGE.rglob("*.py") if "__pycache__" not in p.parts)


def imported(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
            found |= {f"{node.module}.{alias.name}" for alias in node.names}
    return found


def test_the_domain_never_imports_the_pipeline() -> None:
    offenders = {}
    for path in modules():
        rel = path.relative_to(ROOT).as_posix()
        if rel.startswith(ABOVE_THE_DOMAIN):
            continue
        reached = sorted(m for m in imported(path) if m == "smt.pipeline" or m.startswith("smt.pipeline."))
        if reached:
            offenders[rel] = reached
    assert offenders == {}, f"domain modules that import the orchestration layer: {offenders}"


def test_stage_adapters_reach_the_pipeline_only_through_their_context() -> None:
    allowed = {"smt.pipeline.context", "smt.pipeline.context.StageContext", "smt.pipeline.gpus",
               "smt.pipeline.params", "smt.pipeline.stage"}  # fmt: skip
    for path in sorted((PACKAGE / "stages").glob("*.py")):
        reached = {m for m in imported(path) if m.startswith("smt.pipeline.")} - allowed
        reached = {m for m in reached if m.rsplit(".", 1)[0] not in allowed}
        assert not reached, f"{path.name} imports {sorted(reached)}"


def test_no_module_is_long_without_a_reason_at_its_top() -> None:
    long = []
    for path in modules():
        text = path.read_text()
        if text.count("\n") > MAX_LINES and "Longer than" not in text.split('"""')[1]:
            long.append(f"{path.relative_to(ROOT)} ({text.count(chr(10))} lines)")
    assert long == [], f"modules over {MAX_LINES} lines with no reason in their docstring: {long}"
