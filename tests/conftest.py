"""Fixtures: a copy of the project with the smoke configuration in a temporary git repository, built once by
Snakemake (and recorded in DVC) for every test that needs it, and the `dvc repro` from a clean state that
starts in the background as soon as the session knows it will need it."""

from __future__ import annotations

import copy
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers import SMALL, BackgroundBuild, deep_update, make_workspace, sh


@pytest.fixture(scope="session")
def small_workspace(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    yield make_workspace(tmp_path_factory.mktemp("ws"), SMALL)


@pytest.fixture(scope="session")
def base_model(small_workspace: Path) -> Path:
    """The embedded default base model, built by Snakemake as a single target of the small workspace."""
    sh("snakemake --cores 2 results/models/base/smollm2", small_workspace)
    return small_workspace / "results" / "models" / "base" / "smollm2"


@pytest.fixture(scope="session")
def built(small_workspace: Path) -> Path:
    """The small configuration built by `snakemake --cores 2`."""
    sh("snakemake --cores 2", small_workspace, timeout=1500)
    return small_workspace


@pytest.fixture(scope="session")
def recorded(built: Path) -> Path:
    """The built workspace recorded in DVC. Each test that edits it restores it and checks that both tools
    are clean again, so this runs once."""
    sh("python -m smt record", built)
    return built


# `dvc repro` from a clean state (tests/test_pipeline.py): a whole second build, with shorter generations and
# fewer questions (the full configuration's scores are checked on the Snakemake build). DVC runs one stage at a
# time, so it starts, on one thread, as soon as the session has collected its test, and uses the core that the
# unit tests and the Snakemake build leave idle; the test waits for it.
DVC_CLEAN_TEST = "test_dvc_repro_from_clean_state_then_sync"
DVC_CLEAN = {
    "synth_docs": {
        "max_new_tokens": 32,
        "generators": {
            "active_reading": {"strategies_max_new_tokens": 24},
            "focal_rewrite": {"strategies_max_new_tokens": 24},
        },
    },
    "eval": {"max_questions": 4},
}


_BACKGROUND: dict[str, BackgroundBuild] = {}


def _dvc_clean_build() -> BackgroundBuild:
    return BackgroundBuild(["dvc", "repro"], deep_update(copy.deepcopy(SMALL), DVC_CLEAN))


def pytest_collection_finish(session: pytest.Session) -> None:
    if not session.config.option.collectonly and any(item.name == DVC_CLEAN_TEST for item in session.items):
        _BACKGROUND[DVC_CLEAN_TEST] = _dvc_clean_build()


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    for build in _BACKGROUND.values():
        build.stop(keep=exitstatus != 0)  # a failed session keeps the workspace to look at


@pytest.fixture(scope="session")
def dvc_from_clean() -> BackgroundBuild:
    if DVC_CLEAN_TEST not in _BACKGROUND:
        _BACKGROUND[DVC_CLEAN_TEST] = _dvc_clean_build()
    return _BACKGROUND[DVC_CLEAN_TEST]
