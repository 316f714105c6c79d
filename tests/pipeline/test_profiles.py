"""Profiles (profiles/<name>/config.yaml): placement and parallelism only, with options Snakemake knows, for
rules that exist. Snakemake ignores `set-resources` entries for unknown rules, so a renamed stage would
silently lose its GPUs."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from helpers import ROOT, sh
from snakemake.cli import get_argument_parser
from snakemake.profiles import ProfileConfigFileParser

PROFILES = sorted(p.parent.name for p in (ROOT / "profiles").glob("*/config.yaml"))
# Options that change what is computed rather than where: those belong in params.yaml.
RESULT_OPTIONS = {"config", "configfile", "configfiles", "config-file", "snakefile", "forcerun", "forceall"}


def parse(name: str) -> dict:
    path = ROOT / "profiles" / name / "config.yaml"
    with path.open() as stream:
        return dict(ProfileConfigFileParser().parse(stream))


def pinned(file: str) -> set[str]:
    text = (ROOT / "envs" / file).read_text()
    return set(re.findall(r"^([A-Za-z0-9_.-]+)==", text, flags=re.M))


def key_values(items: list[str]) -> dict[str, str]:
    return dict(item.split("=", 1) for item in items)


def test_the_catalog_profiles_exist() -> None:
    assert {"default", "gpu", "slurm", "kubernetes"} <= set(PROFILES)


@pytest.fixture(scope="module")
def rules(small_workspace: Path) -> set[str]:
    return set(sh("snakemake --list-rules", small_workspace).stdout.split())


@pytest.mark.parametrize("name", PROFILES)
def test_profile_is_placement_only_with_known_options_and_rules(name: str, rules: set[str]) -> None:
    profile = parse(name)
    assert not RESULT_OPTIONS & set(profile), f"profiles/{name}: results are configured in params.yaml"
    executor = profile.get("executor")
    if executor:
        plugin = f"snakemake-executor-plugin-{executor}"
        assert plugin in pinned("requirements-cpu.txt") | pinned("requirements-cluster.txt"), plugin
    options = set(get_argument_parser()._option_string_actions)
    for key in profile:
        if executor and key.startswith(f"{executor}-") and f"--{key}" not in options:
            continue  # an executor plugin's own option; the plugin is not installed in this environment
        assert f"--{key}" in options, f"profiles/{name}: unknown option {key}"
    named = {item.split(":", 1)[0] for item in profile.get("set-resources", [])}
    assert named <= rules, f"profiles/{name}: no such rule {sorted(named - rules)}"


def test_the_gpu_profile_can_schedule_its_largest_job() -> None:
    profile = parse("gpu")
    per_rule = [
        int(v) for item in profile["set-resources"] for k, v in [item.split(":", 1)[1].split("=")] if k == "gpu"
    ]
    assert max(per_rule) <= int(key_values(profile["resources"])["gpu"])


@pytest.mark.parametrize("name", ["slurm", "kubernetes"])
def test_cluster_profiles_give_gpus_to_the_same_rules_as_the_gpu_profile(name: str) -> None:
    def gpu_rules(profile: dict) -> dict[str, str]:
        found = {}
        for item in profile["set-resources"]:
            rule, setting = item.split(":", 1)
            key, value = setting.split("=", 1)
            if key == "gpu":
                found[rule] = value
        return found

    assert set(gpu_rules(parse(name))) == set(gpu_rules(parse("gpu")))


@pytest.mark.parametrize("name", ["gpu", "slurm", "kubernetes"])
def test_generation_gpus_go_to_the_shard_jobs_not_the_merges(name: str) -> None:
    """Under Snakemake every shard is its own job; the merge finds them done, so a GPU held by it sits idle."""
    gpu_rules = {item.split(":", 1)[0] for item in parse(name)["set-resources"] if ":gpu=" in item}
    assert {"synth_qa_shard", "synth_docs_shard"} <= gpu_rules
    assert not {"synth_qa", "synth_docs"} & gpu_rules


def test_the_slurm_profile_sends_gpu_jobs_to_the_gpu_partition(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SMT_SLURM_GPU_PARTITION", "a100")
    monkeypatch.setenv("SMT_SLURM_ACCOUNT", "lab")
    profile = parse("slurm")
    settings: dict[str, dict[str, str]] = {}
    for item in profile["set-resources"]:
        rule, setting = item.split(":", 1)
        settings.setdefault(rule, {}).update(key_values([setting]))
    for rule, values in settings.items():
        assert ("gpu" in values) == (values.get("slurm_partition") == "a100"), rule
    defaults = key_values(profile["default-resources"])
    assert defaults["slurm_account"] == "lab" and defaults["slurm_partition"] == "cpu"


def test_profiles_are_documented_in_the_readme() -> None:
    readme = Path(ROOT / "README.md").read_text()
    for name in ("gpu", "slurm", "kubernetes"):
        assert f"profiles/{name}" in readme


def test_slurm_gpu_jobs_are_pinned_to_one_node() -> None:
    """The plugin submits `--gpus=N --ntasks-per-gpu=1`: N tasks that SLURM may spread over nodes, while the
    job's processes (accelerate launch, vLLM) share one machine. Every GPU rule asks for one node, and the
    plugin's own submit command says so."""
    from types import SimpleNamespace

    from snakemake_executor_plugin_slurm.submit_string import get_submit_command

    class Resources(dict):
        def __getattr__(self, name: str) -> object:
            return self[name]

    settings: dict[str, dict[str, str]] = {}
    for item in parse("slurm")["set-resources"]:
        rule, setting = item.split(":", 1)
        settings.setdefault(rule, {}).update(key_values([setting]))
    gpu_rules = {rule: values for rule, values in settings.items() if int(values.get("gpu", 0))}
    assert {"train", "synth_qa_shard", "synth_docs_shard"} <= set(gpu_rules)
    for rule, values in gpu_rules.items():
        assert values.get("nodes") == "1", rule
        resources = Resources({k: int(v) for k, v in values.items() if v.isdigit()})
        job = SimpleNamespace(resources=resources, threads=1, is_group=lambda: False)
        params = {"run_uuid": "u", "slurm_logfile": "l", "comment_str": "c", "account": "", "partition": "-p gpu",
                  "workdir": None}  # fmt: skip
        command = get_submit_command(job, params)
        assert "--nodes=1" in command and "--ntasks-per-gpu=1" in command, command


def test_the_gpu_environment_pins_everything_the_cpu_environment_pins() -> None:
    """The GPU set is the CPU set with vLLM (which brings its CUDA torch) and faiss-gpu for faiss-cpu (the same
    version): a package missing from it (pypdfium2 was) breaks a stage only on the GPU machines."""
    assert pinned("requirements-cpu.txt") - pinned("requirements-gpu.txt") == {"torch", "faiss-cpu"}
    versions = {line.split("==")[0]: line for line in (ROOT / "envs/requirements-cpu.txt").read_text().splitlines()}
    gpu = (ROOT / "envs/requirements-gpu.txt").read_text().splitlines()
    assert all(versions[name] in gpu for name in pinned("requirements-gpu.txt") & set(versions))
    assert versions["faiss-cpu"].replace("faiss-cpu", "faiss-gpu") in gpu
