"""Each stage's source files, computed from its implementation rather than written by hand.

A stage declares only its entry modules (e.g. `smt/stages/synth_docs.py` and `smt/synth/generators/{generator}.py`);
its code dependencies are the import closure of those modules (every `import` in the file, at any depth,
including the lazy ones inside functions, and `importlib.import_module` with a constant name), plus the prompt
files they load (`prompts.load/text/sections/digest` with a constant or a module-level name bound to one) and the
data files they list in a module-level `DATA_FILES` tuple (repository-relative globs).

Two kinds of modules are treated specially, and the choice is tested:

- CORE modules shape the bytes of every output (atomic writes, params fingerprints, provenance, the stage
  context): every stage declares them, so an edit to one reruns everything, in both tools.
- ORCHESTRATION modules decide which command runs with which paths and params (the stage table, the
  renderers, stamps, GPU placement, the command line). They are declared by no stage: what they decide reaches
  a stage only through its declaration (command, inputs, outputs, params keys), which both tools compare.

A template such as `smt/synth/generators/{generator}.py` stays a template (one DVC `foreach`/`matrix` entry serves
every value) when each value's closure holds its own file at that place; anything else a value's closure
reaches is declared for every value, so both tools see the same list.
"""

from __future__ import annotations

import ast
import functools
import glob
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

PACKAGE = "smt"
PACKAGE_DIR = Path(__file__).resolve().parents[1]
ROOT = PACKAGE_DIR.parent

CORE = (
    "smt/__init__.py",
    "smt/artifacts.py",
    "smt/io.py",
    "smt/pipeline/__init__.py",
    "smt/pipeline/context.py",
    "smt/pipeline/params.py",
    "smt/pipeline/provenance.py",
)
# The command line and every other module of the orchestration layer.
ORCHESTRATION = frozenset(
    {"smt/__main__.py", "smt/cli.py"}
    | {
        p.relative_to(ROOT).as_posix()
        for p in (PACKAGE_DIR / "pipeline").glob("*.py")
        if p.relative_to(ROOT).as_posix() not in CORE
    }
)
PROMPT_CALLS = {"load", "text", "sections", "digest"}
_AXIS = re.compile(r"\{([a-z_]+)\}")


@dataclass(frozen=True)
class Facts:
    """What one source file pulls in: modules, prompt names and data files."""

    modules: frozenset[str]
    prompts: frozenset[str]
    data: frozenset[str]


def module_file(name: str) -> str | None:
    """`smt.a.b` -> 'smt/a/b.py' or 'smt/a/b/__init__.py' (repository-relative), None if no such module."""
    parts = name.split(".")
    if parts[0] != PACKAGE:
        return None
    base = ROOT.joinpath(*parts)
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate.relative_to(ROOT).as_posix()
    return None


def _module_name(rel: str) -> str:
    parts = rel[: -len(".py")].split("/")
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _with_parents(name: str) -> set[str]:
    """Importing `smt.a.b` runs `smt/__init__.py` and `smt/a/__init__.py` too."""
    parts = name.split(".")
    return {".".join(parts[: i + 1]) for i in range(len(parts))}


def _constants(tree: ast.Module) -> dict[str, str]:
    found: dict[str, str] = {}
    for node in tree.body:
        if isinstance(node, ast.Assign) and isinstance(node.value, ast.Constant) and isinstance(node.value.value, str):
            for target in node.targets:
                if isinstance(target, ast.Name):
                    found[target.id] = node.value.value
    return found


def _data_globs(tree: ast.Module) -> set[str]:
    for node in tree.body:
        if (
            isinstance(node, ast.Assign)
            and any(isinstance(t, ast.Name) and t.id == "DATA_FILES" for t in node.targets)
            and isinstance(node.value, ast.Tuple | ast.List)
        ):
            return {e.value for e in node.value.elts if isinstance(e, ast.Constant) and isinstance(e.value, str)}
    return set()


def _runtime_nodes(tree: ast.AST) -> Iterable[ast.AST]:
    """Every node, except what sits under `if TYPE_CHECKING:` (imports for annotations only)."""
    for node in ast.iter_child_nodes(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            yield from (n for child in node.orelse for n in ast.walk(child))
            continue
        yield node
        yield from _runtime_nodes(node)


@functools.cache
def facts(rel: str) -> Facts:
    """Parse one source file (cached per process)."""
    tree = ast.parse((ROOT / rel).read_text(), filename=rel)
    package = _module_name(rel) if rel.endswith("__init__.py") else _module_name(rel).rpartition(".")[0]
    constants = _constants(tree)
    modules: set[str] = set()
    prompts: set[str] = set()
    for node in _runtime_nodes(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] == PACKAGE:
                    modules |= _with_parents(alias.name)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([node.module] if node.module else []))
            else:
                base = node.module or ""
            if base.split(".")[0] != PACKAGE:
                continue
            modules |= _with_parents(base)
            for alias in node.names:
                if module_file(f"{base}.{alias.name}"):
                    modules.add(f"{base}.{alias.name}")
        elif isinstance(node, ast.Call):
            func = node.func
            arg = node.args[0] if node.args else None
            value = None
            if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
                value = arg.value
            elif isinstance(arg, ast.Name):
                value = constants.get(arg.id)
            if value is None:
                continue
            if isinstance(func, ast.Attribute) and func.attr == "import_module" and value.startswith(PACKAGE + "."):
                modules |= _with_parents(value)
            elif isinstance(func, ast.Attribute) and func.attr in PROMPT_CALLS:
                if isinstance(func.value, ast.Name) and func.value.id == "prompts":
                    prompts.add(value)
    return Facts(frozenset(modules), frozenset(prompts), frozenset(_data_globs(tree)))


def _prompt_file(name: str) -> str:
    return f"{PACKAGE}/prompts/{name}.txt"


def _data_files(pattern: str) -> list[str]:
    return sorted(Path(p).relative_to(ROOT).as_posix() for p in glob.glob(str(ROOT / pattern)) if Path(p).is_file())


@functools.cache
def _closure(roots: tuple[str, ...]) -> frozenset[str]:
    found: set[str] = set()
    todo = [r for r in roots if r not in ORCHESTRATION]
    while todo:
        rel = todo.pop()
        if rel in found:
            continue
        found.add(rel)
        if not rel.endswith(".py"):
            continue
        for package in _with_parents(_module_name(rel)):  # importing a module runs its packages' __init__
            path = module_file(package)
            if path and path not in found and path not in ORCHESTRATION:
                todo.append(path)
        info = facts(rel)
        found |= {_prompt_file(p) for p in info.prompts}
        for pattern in info.data:
            found |= set(_data_files(pattern))
        for name in info.modules:
            path = module_file(name)
            if path and path not in found and path not in ORCHESTRATION:
                todo.append(path)
    return frozenset(found)


def closure(roots: Iterable[str]) -> frozenset[str]:
    """Every source, prompt and data file the given files reach (themselves included), orchestration aside."""
    return _closure(tuple(sorted(set(roots))))


def _templatize(path: str, axis: str, value: str) -> str:
    """'smt/prompts/wrap.txt' -> 'smt/prompts/{generator}.txt' for value 'wrap'."""
    parts = path.split("/")
    *folders, name = parts
    stem, dot, suffix = name.partition(".")
    folders = ["{" + axis + "}" if f == value else f for f in folders]
    return "/".join([*folders, ("{" + axis + "}" if stem == value else stem) + dot + suffix])


def fill(template: str, axes: dict[str, str]) -> str:
    for axis, value in axes.items():
        template = template.replace("{" + axis + "}", value)
    return template


def templates(roots: Iterable[str], universes: dict[str, tuple[str, ...]]) -> tuple[str, ...]:
    """A stage's code dependencies as templates over its axes (`universes`: every value each axis can take).

    Fixed roots contribute their closure; a templated root contributes, for every value, its closure with that
    value's own files written back as the template, or as plain files where the template would not fit every
    value."""
    roots = tuple(roots)
    found: set[str] = set(closure([*CORE, *(r for r in roots if not _AXIS.search(r))]))
    for root in (r for r in roots if _AXIS.search(r)):
        (axis,) = set(_AXIS.findall(root))
        values = universes[axis]
        for value in values:
            for path in closure([fill(root, {axis: value})]):
                template = _templatize(path, axis, value)
                fits = template != path and all((ROOT / fill(template, {axis: v})).is_file() for v in values)
                found.add(template if fits else path)
    return tuple(sorted(found, key=lambda p: (_AXIS.search(p) is not None, p)))


def all_sources() -> list[str]:
    """Every module and prompt file of the package (repository-relative)."""
    files = [p for p in PACKAGE_DIR.rglob("*.py") if "__pycache__" not in p.parts]
    files += list((PACKAGE_DIR / "prompts").glob("*.txt"))
    return sorted(p.relative_to(ROOT).as_posix() for p in files)
