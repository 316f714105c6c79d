"""params.yaml validation: every bad value stops with a message naming the key and what is allowed."""

from __future__ import annotations

import copy
import re
from pathlib import Path

import pytest
import yaml

from smt.pipeline import params as P

ROOT = Path(__file__).resolve().parents[2]
DEFAULT = yaml.safe_load((ROOT / "params.yaml").read_text())


def mutated(path: str, value: object) -> dict:
    params = copy.deepcopy(DEFAULT)
    *parents, last = path.split(".")
    node = params
    for part in parents:
        node = node[part]
    node[last] = value
    return params


def test_default_params_are_valid() -> None:
    assert P.load(ROOT / "params.yaml")["benchmarks"] == {"demo": {"source": "smt/benchmarks/demo"}}


def test_unknown_key_is_named_with_the_allowed_keys() -> None:
    params = mutated("synth_qa.temprature", 0.5)
    with pytest.raises(P.ParamsError) as err:
        P.validate(params)
    assert "temprature" in str(err.value) and "'synth_qa'" in str(err.value) and "temperature" in str(err.value)


def test_unknown_top_level_key() -> None:
    with pytest.raises(P.ParamsError, match=r"unknown key\(s\) \['bogus'\] at the top level"):
        P.validate({**DEFAULT, "bogus": 1})


def test_enum_value_lists_allowed_values() -> None:
    with pytest.raises(P.ParamsError, match=r"'rag.retriever' = 'sparse' is not allowed; allowed values: \['bm25', "):
        P.validate(mutated("rag.retriever", "sparse"))


def test_out_of_range_names_bounds() -> None:
    with pytest.raises(P.ParamsError, match=r"'synth_qa.top_p' = 1.5 is out of range; allowed: .*'maximum': 1"):
        P.validate(mutated("synth_qa.top_p", 1.5))


def test_wrong_type() -> None:
    with pytest.raises(P.ParamsError, match=r"'train.max_steps' = 'ten' has the wrong type; expected integer"):
        P.validate(mutated("train.max_steps", "ten"))


def test_load_names_the_file(tmp_path: Path) -> None:
    bad = tmp_path / "params.yaml"
    bad.write_text(yaml.safe_dump(mutated("eval.scorer", "guess")))
    with pytest.raises(P.ParamsError, match=rf"^{bad}: 'eval.scorer'"):
        P.load(bad)


def test_fingerprint_depends_only_on_its_keys() -> None:
    keys = ("synth_qa.temperature", "seed")
    base = P.fingerprint(DEFAULT, keys)
    assert P.fingerprint(mutated("train.learning_rate", 0.5), keys) == base
    assert P.fingerprint(mutated("synth_qa.temperature", 0.5), keys) != base


def test_cli_rejects_invalid_params_with_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from smt.cli import main

    bad = tmp_path / "params.yaml"
    bad.write_text(yaml.safe_dump(mutated("mix.replay_fraction", 2)))
    assert main(["--params", str(bad), "check"]) == 2
    assert "'mix.replay_fraction' = 2 is out of range" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("roles.student", "llama", "'roles.student' = 'llama' is not a model under 'models'"),
        ("recipes.smt.wrap", 0.5, "'recipes.smt.wrap': 'wrap' is not a stream"),
        ("recipes.smt.quality/qa", 0.5, "'recipes.smt.quality/qa': benchmark 'quality' is not under 'benchmarks'"),
        ("recipes.smt.qa", 0.7, "'recipes.smt': the shares sum to 1.2, not 1"),
    ],
)
def test_references_between_keys_are_checked_when_params_load(key: str, value: object, message: str) -> None:
    with pytest.raises(P.ParamsError, match=re.escape(message)):
        P.validate(mutated(key, value))
