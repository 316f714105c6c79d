"""The runtime check that keeps each stage's declaration truthful, beside the params guard of its context.

While a stage runs, every file it opens through Python is recorded (an audit hook on the `open` event). After
it has run, every `smt` module it loaded must be among its declared code dependencies (or the orchestration
layer, see smt.codedeps), and every project file it opened under `smt/`, `envs/` or `results/` must be one of
its declared code files, inputs or outputs (or scratch the pipeline owns: hidden folders under results/,
logs, atomic-write temporaries). A stage that reads an undeclared file fails with a message naming it, so a
dependency that the registry forgot cannot go unnoticed on a CI run.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable
from pathlib import Path

from smt.pipeline import codedeps

CHECKED = ("smt/", "envs/", "results/")
PIPELINE_SCRATCH = ("results/logs/", "results/benchmarks/")
_recorders: list[set[str]] = []
_installed = False


class UndeclaredDependency(RuntimeError):
    """A stage loaded a module or opened a file that its registry entry does not declare."""


def _hook(event: str, args: tuple[object, ...]) -> None:
    if event != "open" or not _recorders or not isinstance(args[0], str | bytes | Path):
        return
    name = args[0].decode() if isinstance(args[0], bytes) else str(args[0])
    if not name.endswith((".py", ".pyc")):
        _recorders[-1].add(name)


class Audit:
    """Records what the block uses: the files it opens (Python-level opens; libraries reading in C are not
    seen) and the modules it imports (those loaded before it, by the command line, are orchestration or core)."""

    def __enter__(self) -> Audit:
        global _installed
        if not _installed:
            sys.addaudithook(_hook)
            _installed = True
        self.opened: set[str] = set()
        self.modules: set[str] = set()
        self._before = set(sys.modules)
        _recorders.append(self.opened)
        return self

    def __exit__(self, *exc: object) -> None:
        _recorders.remove(self.opened)
        self.modules = set(sys.modules) - self._before


def _relative(path: str, root: Path) -> str | None:
    try:
        return Path(path).resolve().relative_to(root).as_posix()
    except ValueError:
        return None


def _covered(rel: str, declared: Iterable[str]) -> bool:
    for path in declared:
        path = path.rstrip("/")
        if rel == path or rel.startswith(path + "/"):
            return True
    return False


def _scratch(rel: str, outputs: Iterable[str]) -> bool:
    """Pipeline bookkeeping, or an atomic-write temporary beside one of the stage's outputs."""
    if rel.startswith(PIPELINE_SCRATCH) or any(part.startswith(".") for part in rel.split("/")[1:-1]):
        return True
    name = rel.rsplit("/", 1)[-1]
    return name.startswith(".") and any(Path(o).parent.as_posix() == str(Path(rel).parent) for o in outputs)


def check(
    stage: str,
    code: Iterable[str],
    inputs: Iterable[str],
    outputs: Iterable[str],
    audit: Audit,
    root: Path | None = None,
) -> None:
    """Raise UndeclaredDependency naming every undeclared module or file the stage used."""
    root = (root or Path.cwd()).resolve()
    code, inputs, outputs = set(code), list(inputs), list(outputs)
    allowed_modules = code | codedeps.ORCHESTRATION
    problems: list[str] = []
    for name in sorted(audit.modules):
        path = getattr(sys.modules.get(name), "__file__", None)
        if (not name.startswith(codedeps.PACKAGE + ".") and name != codedeps.PACKAGE) or not path:
            continue
        rel = _relative(path, codedeps.ROOT)
        if rel and rel not in allowed_modules:
            problems.append(f"module {rel} (imported) is not among the stage's code dependencies")
    for name in sorted(audit.opened):
        rel = _relative(name, root)
        if rel is None or not rel.startswith(CHECKED):
            continue
        if rel in code or _covered(rel, inputs) or _covered(rel, outputs) or _scratch(rel, outputs):
            continue
        problems.append(f"file {rel} (opened) is neither a declared input, code file nor output")
    if problems:
        raise UndeclaredDependency(
            f"stage {stage} used what its declaration does not list (smt/pipeline/stages.py):\n  "
            + "\n  ".join(problems)
        )
