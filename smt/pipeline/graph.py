"""The graph of stage instances under a params.yaml: fan-out, concrete paths, edges, what a change reruns, and
each instance's code dependencies."""

from __future__ import annotations

import functools
from typing import Any

from smt.pipeline import codedeps, targets
from smt.pipeline import params as P
from smt.pipeline import stages as S
from smt.pipeline.stage import (
    AXIS_REF,
    AXIS_VALUES_KEY,
    PARAM_REFS,
    RECIPE_MANIFESTS,
    RECIPE_STREAMS,
    Stage,
    fill_axes,
    instance_id,
)
from smt.pipeline.stages import STAGES


def resolve_params_refs(template: str, params: dict[str, Any]) -> str:
    """Replace `${dotted.key}` with its value from params."""
    return PARAM_REFS.sub(lambda m: str(P.get(params, m.group(1))), template)


def axis_values(params: dict[str, Any], axis: str) -> list[str]:
    """The values an axis takes: a mapping's keys or a list's items, as strings."""
    return [str(v) for v in P.get(params, AXIS_VALUES_KEY[axis])]


def instances(st: Stage, params: dict[str, Any]) -> list[dict[str, str]]:
    """Every axis assignment of a stage under these params (static fan-out)."""
    result: list[dict[str, str]] = [{}]
    for axis in st.axes:
        result = [{**r, axis: v} for r in result for v in axis_values(params, axis)]
    return result


def instance(params: dict[str, Any], iid: str) -> tuple[Stage, dict[str, str]]:
    """The stage and axes of an instance id ('mix_smt@demo-4000'), under these params."""
    for st in STAGES:
        for axes in instances(st, params):
            if instance_id(st, axes) == iid:
                return st, axes
    raise KeyError(f"no stage instance {iid!r} under these params")


def expand(template: str, axes: dict[str, str], params: dict[str, Any]) -> list[str]:
    """Concrete paths of a template: the stage's own axes filled, params refs resolved, any other axis
    expanded over params; a recipe's streams are those its params entry names."""
    if template in (RECIPE_STREAMS, RECIPE_MANIFESTS):
        shares = P.get(params, f"recipes.{axes['recipe']}")
        return S.stream_files(shares, axes["benchmark"], manifests=template == RECIPE_MANIFESTS)
    template = resolve_params_refs(fill_axes(template, axes), params)
    paths = [template]
    for axis in AXIS_REF.findall(template):
        values = [axes[axis]] if axis in axes else axis_values(params, axis)
        paths = [p.replace("{" + axis + "}", v) for p in paths for v in values]
    return paths


def stage_inputs(st: Stage, axes: dict[str, str], params: dict[str, Any]) -> dict[str, list[str]]:
    return {k: expand(v, axes, params) for k, v in st.inputs.items()}


def stage_outputs(st: Stage, axes: dict[str, str], params: dict[str, Any]) -> dict[str, str]:
    return {k: expand(o.path, axes, params)[0] for k, o in st.outputs.items()}


def _under(path: str, parent: str) -> bool:
    return path == parent or path.startswith(parent.rstrip("/") + "/")


def graph(params: dict[str, Any]) -> dict[str, set[str]]:
    """Instance id -> ids of the instances that read one of its outputs."""
    nodes = [(st, ax) for st in STAGES for ax in instances(st, params)]
    produced = {instance_id(st, ax): list(stage_outputs(st, ax, params).values()) for st, ax in nodes}
    edges: dict[str, set[str]] = {iid: set() for iid in produced}
    for st, ax in nodes:
        reader = instance_id(st, ax)
        for paths in stage_inputs(st, ax, params).values():
            for path in paths:
                for writer, outs in produced.items():
                    if any(_under(path, o) or _under(o, path) for o in outs):
                        edges[writer].add(reader)
    return edges


def downstream(params: dict[str, Any], roots: set[str]) -> set[str]:
    """The roots and every instance that depends on them, transitively."""
    edges = graph(params)
    seen: set[str] = set()
    todo = list(roots)
    while todo:
        node = todo.pop()
        if node not in seen:
            seen.add(node)
            todo.extend(edges.get(node, ()))
    return seen


def changed_instances(old: dict[str, Any], new: dict[str, Any]) -> set[str]:
    """Instances under `new` whose params values, or stream token targets, differ from `old`, or that `old`
    does not have."""
    old_targets, new_targets = targets.texts(old), targets.texts(new)

    def values(st: Stage, ax: dict[str, str], params: dict[str, Any], found: dict[str, str]) -> Any:
        return P.subset(params, st.keys(ax, params)), [found.get(p) for p in st.derived(ax)]

    before = {instance_id(st, ax): values(st, ax, old, old_targets) for st in STAGES for ax in instances(st, old)}
    return {
        instance_id(st, ax)
        for st in STAGES
        for ax in instances(st, new)
        if before.get(instance_id(st, ax)) != values(st, ax, new, new_targets)
    }


def related_keys(a: str, b: str) -> bool:
    """Whether two dotted keys are the same, or one holds the other."""
    return a == b or a.startswith(b + ".") or b.startswith(a + ".")


def readers_of_key(params: dict[str, Any], key: str) -> set[str]:
    """Instances that read this params key (or a parent/child of it)."""
    return {
        instance_id(st, ax)
        for st in STAGES
        for ax in instances(st, params)
        if any(related_keys(k, key) for k in st.keys(ax, params))
    }


def axis_universe(axis: str) -> tuple[str, ...]:
    """Every value an axis can take by the schema (a mapping's allowed keys), for code templates."""
    node = P.schema()
    for part in AXIS_VALUES_KEY[axis].split("."):
        node = node["properties"][part]
    return tuple(node.get("properties", {}))


def code_templates(st: Stage) -> tuple[str, ...]:
    """A stage's source, prompt and data files, computed from its module and entry modules
    (smt.pipeline.codedeps), with `{axis}` where a file is chosen by the instance (its generator's module and
    prompts, its benchmark's loader)."""
    return _code_templates(st.roots)


@functools.cache
def _code_templates(roots: tuple[str, ...]) -> tuple[str, ...]:
    axes = {a for root in roots for a in AXIS_REF.findall(root)}
    return codedeps.templates(roots, {a: axis_universe(a) for a in axes})


def stage_code(st: Stage, axes: dict[str, str]) -> tuple[str, ...]:
    """The source files one instance depends on (`{axis}` filled in, e.g. its benchmark's loader)."""
    return tuple(fill_axes(c, axes) for c in code_templates(st))


def readers_of_file(params: dict[str, Any], path: str) -> set[str]:
    """Instances that list this file among their code dependencies or read it as an input."""
    return {
        instance_id(st, ax)
        for st in STAGES
        for ax in instances(st, params)
        if path in stage_code(st, ax) or any(path in paths for paths in stage_inputs(st, ax, params).values())
    }
