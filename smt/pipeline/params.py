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


def _first_round_items(generator: dict[str, Any]) -> int:
    """Items per document a document generator plans in its first round (EntiGraph: its pairs and triples)."""
    return sum(generator.get(k, 0) for k in ("per_document", "pairs_per_document", "triples_per_document"))


def _entigraph(params: dict[str, Any]) -> dict[str, Any]:
    return params["synth_docs"]["generators"].get("entigraph") or {"triples_per_document": 0, "max_entities": 3}


# Constraints between keys, which a JSON schema cannot state: (the keys, the rule, broken?) Each is checked
# when params are loaded, so `smt check` and Snakemake's parse stop before any job runs, instead of the stage
# that reads the keys failing after generation and training have run.
CROSS_KEY: tuple[tuple[tuple[str, ...], str, Any], ...] = (
    (("rag.chunk_overlap", "rag.chunk_size"), "the overlap must be less than the chunk size",
     lambda p: p["rag"]["chunk_overlap"] >= p["rag"]["chunk_size"]),
    (("rag.top_k", "rag.top_k_retrieve"), "cannot keep more chunks than are retrieved",
     lambda p: p["rag"]["top_k"] > p["rag"]["top_k_retrieve"]),
    (("train.effective_batch_size", "train.per_device_batch_size"),
     "the effective batch size must be a multiple of the per-device batch size",
     lambda p: p["train"]["effective_batch_size"] % p["train"]["per_device_batch_size"] != 0),
    (("rag.reranker", "rag.reranker_model"), "the cross_encoder and causal_lm rerankers need a model folder",
     lambda p: p["rag"]["reranker"] in ("cross_encoder", "causal_lm") and not p["rag"]["reranker_model"]),
    (("synth_docs.generators.entigraph.triples_per_document", "synth_docs.generators.entigraph.max_entities"),
     "a triple needs at least 3 entities",
     lambda p: _entigraph(p)["triples_per_document"] > 0 and _entigraph(p)["max_entities"] < 3),
)  # fmt: skip


def _values(params: dict[str, Any], keys: tuple[str, ...]) -> str:
    shown = []
    for key in keys:
        value = get(params, key)
        shown.append(f"'{key}' = {value!r}" if not isinstance(value, dict) else f"'{key}' = {sorted(value)}")
    return ", ".join(shown)


def validate(params: dict[str, Any], source: str = "params.yaml") -> dict[str, Any]:
    """Raise ParamsError naming the first offending key (most specific first), then the keys of the first broken
    constraint between keys."""
    spec = schema()
    validator = jsonschema.Draft202012Validator(spec)
    errors = sorted(validator.iter_errors(params), key=lambda e: (-len(e.absolute_path), str(e.absolute_path)))
    if errors:
        raise ParamsError(_describe(errors[0], spec, source))
    for keys, rule, broken in CROSS_KEY:
        if broken(params):
            raise ParamsError(f"{source}: {_values(params, keys)}: {rule}")
    check_references(params, source)
    return params


def check_references(params: dict[str, Any], source: str = "params.yaml") -> None:
    """Values that must name something else in params: a model's source has its fields, roles name models,
    recipes name streams that generate something for benchmarks that run, and a recipe's shares sum to 1."""
    models = params["models"]
    for name, model in models.items():
        key = f"models.{name}"
        if model["source"] == "gguf_package" and not (model["package"] and model["gguf_file"]):
            raise ParamsError(
                f"{source}: '{key}.package' = {model['package']!r}, '{key}.gguf_file' = {model['gguf_file']!r}: "
                "gguf_package needs the package and its GGUF file"
            )
        if model["source"] == "local" and not model["path"]:
            raise ParamsError(f"{source}: '{key}.path' = None: a local model needs its folder")
    for role, name in params["roles"].items():
        if name not in models:
            raise ParamsError(f"{source}: 'roles.{role}' = {name!r} is not a model under 'models' ({sorted(models)})")
    generators = params["synth_docs"]["generators"]
    streams = {"qa", *generators}
    for recipe, shares in params["recipes"].items():
        for name in shares:
            benchmark, _, stream = name.rpartition("/")
            if stream not in streams:
                raise ParamsError(
                    f"{source}: 'recipes.{recipe}.{name}': {stream!r} is not a stream (qa or a generator of "
                    f"synth_docs.generators: {sorted(streams)})"
                )
            if stream != "qa" and _first_round_items(generators[stream]) == 0:
                raise ParamsError(
                    f"{source}: 'recipes.{recipe}.{name}': the generator {stream!r} plans no items per document "
                    f"(synth_docs.generators.{stream})"
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
