"""Load and validate params.yaml, the single configuration, and read it by dotted keys."""

from __future__ import annotations

import functools
import hashlib
import json
from pathlib import Path
from typing import Any

import jsonschema
import yaml

SCHEMA_PATH = Path(__file__).parent / "schema" / "params.schema.yaml"
DEFAULT_PARAMS = Path("params.yaml")


class ParamsError(ValueError):
    """params.yaml does not match the schema; the message names the key and what is allowed."""


@functools.cache
def _schema_text() -> str:
    return SCHEMA_PATH.read_text()


def schema() -> dict[str, Any]:
    """The params schema (a fresh copy)."""
    return yaml.safe_load(_schema_text())


def _subschema(schema: dict[str, Any], path: list[Any]) -> dict[str, Any]:
    node = schema
    for part in path:
        if isinstance(part, int):
            node = node.get("items", {})
        else:
            node = node.get("properties", {}).get(part, {})
    return node


def _describe(error: jsonschema.ValidationError, schema: dict[str, Any], source: str) -> str:
    path = list(error.absolute_path)
    key = ".".join(str(p) for p in path) or "<top level>"
    if error.validator == "additionalProperties":
        allowed = sorted(_subschema(schema, path).get("properties", {}))
        unknown = sorted(set(error.instance) - set(allowed))
        where = f"in '{key}'" if path else "at the top level"
        return f"{source}: unknown key(s) {unknown} {where}; allowed keys: {allowed}"
    if error.validator == "required":
        return f"{source}: '{key}': {error.message}"
    if error.validator == "enum":
        return f"{source}: '{key}' = {error.instance!r} is not allowed; allowed values: {error.validator_value}"
    if error.validator in {"minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"}:
        sub = _subschema(schema, path)
        bounds = {k: sub[k] for k in ("minimum", "exclusiveMinimum", "maximum", "exclusiveMaximum") if k in sub}
        return f"{source}: '{key}' = {error.instance!r} is out of range; allowed: {bounds}"
    if error.validator == "type":
        return f"{source}: '{key}' = {error.instance!r} has the wrong type; expected {error.validator_value}"
    return f"{source}: '{key}': {error.message}"


def validate(params: dict[str, Any], source: str = "params.yaml") -> dict[str, Any]:
    """Raise ParamsError naming the first offending key (most specific first)."""
    spec = schema()
    validator = jsonschema.Draft202012Validator(spec)
    errors = sorted(validator.iter_errors(params), key=lambda e: (-len(e.absolute_path), str(e.absolute_path)))
    if errors:
        raise ParamsError(_describe(errors[0], spec, source))
    check_references(params, source)
    return params


def check_references(params: dict[str, Any], source: str = "params.yaml") -> None:
    """Values that must name something else in params: roles name models, recipes name generated streams of
    benchmarks that run, and a recipe's shares sum to 1."""
    models = params["models"]
    for role, name in params["roles"].items():
        if name not in models:
            raise ParamsError(f"{source}: 'roles.{role}' = {name!r} is not a model under 'models' ({sorted(models)})")
    streams = {"qa", *params["synth_docs"]["generators"]}
    for recipe, shares in params["recipes"].items():
        for name in shares:
            benchmark, _, stream = name.rpartition("/")
            if stream not in streams:
                raise ParamsError(
                    f"{source}: 'recipes.{recipe}.{name}': {stream!r} is not a stream (qa or a generator of "
                    f"synth_docs.generators: {sorted(streams)})"
                )
            if benchmark and benchmark not in params["benchmarks"]:
                raise ParamsError(
                    f"{source}: 'recipes.{recipe}.{name}': benchmark {benchmark!r} is not under 'benchmarks' "
                    f"({sorted(params['benchmarks'])})"
                )
        if abs(sum(shares.values()) - 1) > 1e-6:
            raise ParamsError(f"{source}: 'recipes.{recipe}': the shares sum to {sum(shares.values()):g}, not 1")


def load(path: str | Path = DEFAULT_PARAMS) -> dict[str, Any]:
    """Read and validate params.yaml."""
    path = Path(path)
    if not path.exists():
        raise ParamsError(f"{path}: file not found (run from the project root)")
    try:
        params = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise ParamsError(f"{path}: not valid YAML: {exc}") from exc
    if not isinstance(params, dict):
        raise ParamsError(f"{path}: expected a mapping at the top level")
    return validate(params, str(path))


def get(params: dict[str, Any], dotted: str) -> Any:
    """Value of a dotted key such as 'synth_qa.temperature'."""
    node: Any = params
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            raise KeyError(f"params key '{dotted}' not found (missing '{part}')")
        node = node[part]
    return node


def set_value(params: dict[str, Any], dotted: str, value: Any) -> None:
    """Set a dotted key in place (its parents must exist)."""
    *parents, last = dotted.split(".")
    node = get(params, ".".join(parents)) if parents else params
    if not isinstance(node, dict):
        raise KeyError(f"params key '{dotted}': '{'.'.join(parents)}' is not a mapping")
    node[last] = value


def subset(params: dict[str, Any], keys: tuple[str, ...] | list[str]) -> dict[str, Any]:
    """The values of exactly these dotted keys, as a flat, sorted mapping."""
    return {key: get(params, key) for key in sorted(keys)}


def fingerprint(params: dict[str, Any], keys: tuple[str, ...] | list[str]) -> str:
    """A short, stable hash of the values of these keys."""
    blob = json.dumps(subset(params, keys), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()[:16]
